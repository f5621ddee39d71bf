// Every table store tier hands out exactly the bytes of the direct (mmap) path: for each table
// dtype of a generated tiny model (engram-model create), for random row ids with duplicates and
// the first and last rows, through the RAM tier (plain and huge pages) and the SSD tier (buffered,
// O_DIRECT, one thread or several, no cache, an LRU or an LFU cache), over repeated Gathers so
// cached rows are served too. Also: the stats add up, and bad tables are refused by name.
#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/memory/table_store.h"
#include "server/model/model_files.h"
#include "server/model/model_tables.h"
#include "server/util/str_cat.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

using ::testing::HasSubstr;
using testing_util::FreshDir;
using testing_util::Quote;
using testing_util::RunResult;
using testing_util::RunTool;

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// A tiny model per table dtype, created once per process.
const ModelFiles& TinyModel(const std::string& dtype) {
  static std::map<std::string, std::unique_ptr<ModelFiles>> models;
  auto& m = models[dtype];
  if (m == nullptr) {
    const std::string dir = FreshDir("model_" + dtype);
    // fp8 needs rows that are whole blocks of 32: d = 128 / 2 = 64 (two scale bytes a row).
    const std::string extra =
        dtype == "float8_e4m3" ? " --embed-per-ngram 128 --heads-per-ngram 2" : "";
    const RunResult r =
        RunTool("create --preset tiny --table-dtype " + dtype + extra + " --out " + Quote(dir));
    EXPECT_EQ(r.status, 0) << r.output;
    auto files = ModelFiles::Open(dir);
    EXPECT_TRUE(files.ok()) << files.status();
    m = std::move(files).value();
  }
  return *m;
}

struct TierCase {
  std::string name;
  TableStoreOptions opt;
};

std::vector<TierCase> TierCases() {
  std::vector<TierCase> cases;
  auto add = [&](std::string name, auto edit) {
    TableStoreOptions o;
    o.progress = false;
    edit(o);
    cases.push_back({std::move(name), o});
  };
  add("ram", [](TableStoreOptions& o) { o.tier = TableTier::kRam; });
  add("ram_huge", [](TableStoreOptions& o) { o.tier = TableTier::kRam, o.huge_pages = true; });
  add("ssd", [](TableStoreOptions& o) { o.tier = TableTier::kSsd; });
  add("ssd_1thread", [](TableStoreOptions& o) { o.tier = TableTier::kSsd, o.io_threads = 1; });
  add("ssd_direct", [](TableStoreOptions& o) { o.tier = TableTier::kSsd, o.direct_io = true; });
  add("ssd_lru", [](TableStoreOptions& o) {
    o.tier = TableTier::kSsd, o.cache_bytes = 64 << 10, o.cache_policy = CachePolicy::kLru;
  });
  add("ssd_lfu", [](TableStoreOptions& o) {
    o.tier = TableTier::kSsd, o.cache_bytes = 64 << 10, o.cache_policy = CachePolicy::kLfu;
  });
  add("ssd_lru_direct", [](TableStoreOptions& o) {
    o.tier = TableTier::kSsd, o.cache_bytes = 16 << 10, o.direct_io = true;
  });
  return cases;
}

// Random ids with duplicates, plus the first and last rows.
std::vector<int64_t> RandomIds(int64_t rows, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids;
  ids.reserve(n + 4);
  ids.push_back(rows - 1);
  ids.push_back(0);
  for (size_t i = 0; i < n; ++i) {
    // Half the draws from a small hot range: duplicates and cache hits.
    const int64_t range = i % 2 ? rows : std::min<int64_t>(rows, 64);
    ids.push_back(static_cast<int64_t>(rng() % static_cast<uint64_t>(range)));
  }
  ids.push_back(rows - 1);
  return ids;
}

class TierEqualityTest : public ::testing::TestWithParam<std::tuple<std::string, TierCase>> {};

TEST_P(TierEqualityTest, BytesMatchTheMmapTier) {
  const auto& [dtype, tier] = GetParam();
  const ModelFiles& files = TinyModel(dtype);
  for (int slot = 0; slot < static_cast<int>(files.config().engram.layer_ids.size()); ++slot) {
    TableStoreOptions mopt;
    auto ref = OpenTableStore(files, slot, mopt);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto store = OpenTableStore(files, slot, tier.opt);
    ASSERT_TRUE(store.ok()) << store.status();
    const TableLayout& l = (*store)->layout();
    EXPECT_EQ(l.rows, (*ref)->layout().rows);
    EXPECT_EQ(l.packed_bytes, (*ref)->layout().packed_bytes);
    EXPECT_EQ((*store)->tier_name(), TableTierName(tier.opt.tier));
    uint64_t requested = 0;
    // Batches of 1 (no coalescing), a few (serial reads) and thousands (parallel runs).
    for (size_t n : {size_t{1}, size_t{37}, size_t{3000}, size_t{3000}}) {
      const auto ids = RandomIds(l.rows, n, n * 131 + static_cast<uint64_t>(slot));
      std::vector<std::byte> want(ids.size() * l.packed_bytes), got(want.size(), std::byte{0xAA});
      ASSERT_TRUE((*ref)->Gather(ids, want.data()).ok());
      const absl::Status st = (*store)->Gather(ids, got.data());
      ASSERT_TRUE(st.ok()) << st;
      for (size_t i = 0; i < ids.size(); ++i)
        ASSERT_EQ(0, std::memcmp(want.data() + i * l.packed_bytes, got.data() + i * l.packed_bytes,
                                 l.packed_bytes))
            << tier.name << " " << dtype << " slot " << slot << " row " << ids[i];
      requested += ids.size();
    }
    const TableStoreStats& s = (*store)->stats();
    EXPECT_EQ(s.rows_requested.load(), requested);
    EXPECT_EQ(s.rows_from_cache + s.rows_from_ram + s.rows_from_ssd, requested);
    EXPECT_EQ(s.bytes_from_cache + s.bytes_from_ram + s.bytes_from_ssd, requested * l.packed_bytes);
    if (tier.opt.tier == TableTier::kSsd) {
      EXPECT_GT(s.ssd_reads.load(), 0u);
      EXPECT_LT(s.ssd_reads.load(), s.rows_from_ssd.load());  // coalesced and de-duplicated
      EXPECT_EQ(s.rows_from_cache.load() > 0, tier.opt.cache_bytes > 0);
    } else {
      EXPECT_EQ(s.rows_from_ram.load(), requested);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTiers, TierEqualityTest,
    ::testing::Combine(::testing::Values("float32", "bfloat16", "float16", "float8_e4m3"),
                       ::testing::ValuesIn(TierCases())),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param).name; });

TEST(TableStoreTest, FromFileMatchesModelFiles) {
  const ModelFiles& files = TinyModel("float8_e4m3");
  const int layer = files.config().engram.layer_ids[0];
  const std::string path = files.TableFile(0).path();
  for (TableTier tier : {TableTier::kMmap, TableTier::kRam, TableTier::kSsd}) {
    TableStoreOptions opt;
    opt.tier = tier;
    auto a = OpenTableStore(files, 0, opt);
    auto b = OpenTableStoreFromFile(path, TableTensorName(layer), TableScaleTensorName(layer), opt);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    const auto ids = RandomIds((*a)->layout().rows, 500, 7);
    std::vector<std::byte> x(ids.size() * (*a)->layout().packed_bytes), y(x.size());
    ASSERT_TRUE((*a)->Gather(ids, x.data()).ok());
    ASSERT_TRUE((*b)->Gather(ids, y.data()).ok());
    EXPECT_EQ(x, y) << TableTierName(tier);
  }
}

TEST(TableStoreTest, BadTablesAreRefusedByName) {
  const ModelFiles& files = TinyModel("float8_e4m3");
  const int layer = files.config().engram.layer_ids[0];
  const std::string path = files.TableFile(0).path();
  const TableStoreOptions opt;
  auto missing = OpenTableStoreFromFile(path, "nope", "", opt);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(missing.status()), HasSubstr(path + ": no table tensor 'nope'"));
  // The scale tensor is [rows, 2] U8: not a table dtype.
  auto scale = OpenTableStoreFromFile(path, TableScaleTensorName(layer), "", opt);
  EXPECT_THAT(Msg(scale.status()), HasSubstr("has dtype U8, expected F32, BF16"));
  auto no_scale = OpenTableStoreFromFile(path, TableTensorName(layer), "wrong", opt);
  EXPECT_THAT(Msg(no_scale.status()), HasSubstr("needs its scale tensor 'wrong' as U8 ["));
  auto no_file = OpenTableStoreFromFile(path + ".absent", TableTensorName(layer), "", opt);
  EXPECT_THAT(Msg(no_file.status()), HasSubstr(path + ".absent"));
  TableStoreOptions tiny_cache;
  tiny_cache.tier = TableTier::kSsd;
  tiny_cache.cache_bytes = 100;  // less than one set of 8 rows
  auto cache = OpenTableStore(files, 0, tiny_cache);
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(cache.status()), HasSubstr("holds less than one set"));
}

TEST(TableStoreTest, AllTablesOfAModelAreCheckedTogether) {
  const ModelFiles& files = TinyModel("bfloat16");
  TableStoreOptions opt;
  for (TableTier tier : {TableTier::kMmap, TableTier::kRam, TableTier::kSsd}) {
    opt.tier = tier;
    EXPECT_TRUE(CheckTableStoresFit(files, opt).ok());
  }
  opt.cache_bytes = uint64_t{1} << 50;  // 1 PB of row cache per table
  const absl::Status st = CheckTableStoresFit(files, opt);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(st), HasSubstr(StrCat("the memory tables ", files.TableFile(0).path(), " (ssd), ",
                                        files.TableFile(1).path(), " (ssd) need ")));
  EXPECT_THAT(Msg(st), HasSubstr("of memory together, but only "));
  EXPECT_THAT(Msg(st), HasSubstr("--memory-tier"));
  // Per table: only the table with the huge cache is named.
  TableStoreOptions ram;
  ram.tier = TableTier::kRam;
  const absl::Status one = CheckTableStoresFit(files, std::vector<TableStoreOptions>{ram, opt});
  EXPECT_EQ(one.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(one), HasSubstr(StrCat(files.TableFile(1).path(), " (ssd) need")));
}

TEST(TableStoreTest, DequantPackedRowsReadsTheScales) {
  const ModelFiles& files = TinyModel("float8_e4m3");
  TableStoreOptions opt;
  opt.tier = TableTier::kSsd;
  auto store = OpenTableStore(files, 1, opt);
  ASSERT_TRUE(store.ok()) << store.status();
  const TableLayout& l = (*store)->layout();
  EXPECT_EQ(l.packed_bytes, l.data_bytes + static_cast<uint64_t>(l.d / 32));
  const std::vector<int64_t> ids = {3, l.rows - 1};
  std::vector<std::byte> packed(ids.size() * l.packed_bytes);
  ASSERT_TRUE((*store)->Gather(ids, packed.data()).ok());
  std::vector<float> out(ids.size() * static_cast<size_t>(l.d));
  DequantPackedRows(l, packed.data(), static_cast<int64_t>(ids.size()), out.data());
  const auto* data = reinterpret_cast<const uint8_t*>(files.Table(1).data);
  const auto* scales = reinterpret_cast<const uint8_t*>(files.TableScale(1)->data);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int j = 0; j < l.d; ++j) {
      const auto r = static_cast<uint64_t>(ids[i]);
      const float want = Fp8E4M3ToFloat(data[r * static_cast<uint64_t>(l.d) + j]) *
                         Ue8m0ToFloat(scales[r * static_cast<uint64_t>(l.d / 32) + j / 32]);
      ASSERT_EQ(out[i * static_cast<size_t>(l.d) + static_cast<size_t>(j)], want);
    }
}

}  // namespace
}  // namespace engram
