// The table store at its limits: 64-bit addressing (a sparse table of 2^32 + 1000 rows, 275 GB
// logical, read back near its end through every tier), the memory check that refuses a tier
// before loading anything, a file truncated under a running SSD store (the Gather fails with
// the file named, the store keeps serving), descriptors not leaking, and mlock's message.
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/memory/tiers.h"
#include "server/util/safetensors.h"
#include "server/util/str_cat.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing_util::FreshDir;

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

constexpr int64_t kD = 32;  // bf16: 64-byte rows
constexpr uint64_t kRowBytes = kD * 2;
constexpr int64_t kHugeRows = (int64_t{1} << 32) + 1000;
constexpr int64_t kNearEnd = (int64_t{1} << 32) - 4;  // known rows [kNearEnd, kNearEnd + 8)

std::vector<std::byte> KnownRow(int64_t r) {
  std::vector<std::byte> row(kRowBytes);
  for (uint64_t j = 0; j < kRowBytes; ++j)
    row[j] = static_cast<std::byte>((static_cast<uint64_t>(r) * 2654435761u >> (j % 29)) + j);
  return row;
}

// The 275 GB sparse table: rows [kNearEnd, kNearEnd + 8) and the last row hold KnownRow, every
// other row is a hole (zeros). Costs a few KB of disk.
const std::string& SparseTable() {
  static const std::string path = [] {
    std::string p = FreshDir("sparse") + "/huge.safetensors";
    SafetensorsWriter w;
    w.Declare("table", DType::kBF16, {kHugeRows, kD});
    EXPECT_TRUE(w.Open(p).ok());
    EXPECT_TRUE(w.Skip(static_cast<uint64_t>(kNearEnd) * kRowBytes).ok());
    for (int64_t r = kNearEnd; r < kNearEnd + 8; ++r)
      EXPECT_TRUE(w.Append(KnownRow(r).data(), kRowBytes).ok());
    EXPECT_TRUE(w.Skip(static_cast<uint64_t>(kHugeRows - 1 - kNearEnd - 8) * kRowBytes).ok());
    EXPECT_TRUE(w.Append(KnownRow(kHugeRows - 1).data(), kRowBytes).ok());
    const absl::Status st = w.Close();
    EXPECT_TRUE(st.ok()) << st;
    return p;
  }();
  return path;
}

void ExpectKnownRows(TableStore& store, const std::string& what) {
  const std::vector<int64_t> ids = {kHugeRows - 1, kNearEnd + 7, 5,
                                    kNearEnd,      kNearEnd + 4, kNearEnd + 5,
                                    kHugeRows - 1, kNearEnd - 1};
  std::vector<std::byte> got(ids.size() * kRowBytes, std::byte{0xAA});
  const absl::Status st = store.Gather(ids, got.data());
  ASSERT_TRUE(st.ok()) << what << ": " << st;
  for (size_t i = 0; i < ids.size(); ++i) {
    const bool known = ids[i] == kHugeRows - 1 || (ids[i] >= kNearEnd && ids[i] < kNearEnd + 8);
    const std::vector<std::byte> want =
        known ? KnownRow(ids[i]) : std::vector<std::byte>(kRowBytes, std::byte{0});
    EXPECT_EQ(0, std::memcmp(got.data() + i * kRowBytes, want.data(), kRowBytes))
        << what << ": row " << ids[i];
  }
}

TEST(TableStore64BitTest, RowsPast2To32ThroughEveryTier) {
  const std::string& path = SparseTable();
  ASSERT_GT(fs::file_size(path), static_cast<uint64_t>(kHugeRows) * kRowBytes);
  for (int c = 0; c < 4; ++c) {
    TableStoreOptions opt;
    opt.tier = c == 0 ? TableTier::kMmap : TableTier::kSsd;
    opt.direct_io = c == 2;
    opt.cache_bytes = c == 3 ? 1 << 20 : 0;
    auto store = OpenTableStoreFromFile(path, "table", "", opt);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->layout().rows, kHugeRows);
    ExpectKnownRows(**store, StrCat("case ", c));
    ExpectKnownRows(**store, StrCat("case ", c, " again"));  // from the cache in case 3
  }
  // The RAM tier would need 275 GB: OpenTableStore refuses it (below). Its constructor, called
  // directly, maps the 275 GB without reserving it and skips the holes while loading, so the
  // same 64-bit offsets are exercised with only the written pages resident.
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto src = FindTable(**file, "table", "");
  ASSERT_TRUE(src.ok()) << src.status();
  TableStoreOptions ram;
  ram.tier = TableTier::kRam;
  auto store = OpenRamStore(*src, ram);
  if (!store.ok()) GTEST_SKIP() << "cannot map 275 GB of address space here: " << store.status();
  ExpectKnownRows(**store, "ram");
}

TEST(TableStoreResourceTest, RefusesATierThatDoesNotFitInMemory) {
  const std::string& path = SparseTable();
  TableStoreOptions ram;
  ram.tier = TableTier::kRam;
  auto store = OpenTableStoreFromFile(path, "table", "", ram);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(Msg(store.status()),
              HasSubstr(StrCat(path, ": table 'table' on the ram tier needs 274.88 GB (",
                               static_cast<uint64_t>(kHugeRows) * kRowBytes,
                               " bytes) of memory for a copy of the table, but only ")));
  EXPECT_THAT(Msg(store.status()), HasSubstr("is available (MemAvailable in /proc/meminfo)"));

  TableStoreOptions ssd;
  ssd.tier = TableTier::kSsd;
  ssd.cache_bytes = uint64_t{1} << 50;
  store = OpenTableStoreFromFile(path, "table", "", ssd);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(Msg(store.status()), HasSubstr(path + ": table 'table' on the ssd tier needs "));
  EXPECT_THAT(Msg(store.status()), HasSubstr("for its row cache (--memory-cache-bytes)"));

  // The check against an explicit figure: exact bytes in the message.
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  auto src = FindTable(**file, "table", "");
  ASSERT_TRUE(src.ok());
  ssd.cache_bytes = 1 << 20;
  const uint64_t need = TierMemoryBytes(*src, ssd);
  EXPECT_LE(need, uint64_t{1} << 20);
  EXPECT_TRUE(CheckTierResources(*src, ssd, need).ok());
  const absl::Status st = CheckTierResources(*src, ssd, need - 1);
  EXPECT_THAT(Msg(st), HasSubstr(StrCat("(", need, " bytes) of memory")));
  EXPECT_THAT(Msg(st), HasSubstr(StrCat("(", need - 1, " bytes) is available")));
  TableStoreOptions mmap;
  EXPECT_TRUE(CheckTierResources(*src, mmap, 0).ok());  // the mmap tier needs nothing
}

// A bf16 table of 4096 rows in a file of its own.
std::string SmallTable(const std::string& name) {
  std::string p = FreshDir(name) + "/t.safetensors";
  std::vector<std::byte> bytes(4096 * kRowBytes);
  for (int64_t r = 0; r < 4096; ++r)
    std::memcpy(bytes.data() + static_cast<uint64_t>(r) * kRowBytes, KnownRow(r).data(), kRowBytes);
  EXPECT_TRUE(SafetensorsWriter::WriteFile(p, {{"t", DType::kBF16, {4096, kD}, bytes}}).ok());
  return p;
}

TEST(TableStoreFaultTest, TruncatedFileFailsTheGatherNotTheStore) {
  for (int c = 0; c < 3; ++c) {
    const std::string path = SmallTable("trunc" + std::to_string(c));
    TableStoreOptions opt;
    opt.tier = TableTier::kSsd;
    opt.direct_io = c == 1;
    opt.cache_bytes = c == 2 ? 64 << 10 : 0;
    auto store = OpenTableStoreFromFile(path, "t", "", opt);
    ASSERT_TRUE(store.ok()) << store.status();
    TableStore& s = **store;
    // Keep the header and rows [0, 1024): rows from 1024 on are gone.
    fs::resize_file(path, fs::file_size(path) - 3072 * kRowBytes);
    std::vector<std::byte> buf(3 * kRowBytes);
    for (int64_t bad : {int64_t{4095}, int64_t{2000}, int64_t{1024}}) {
      const std::vector<int64_t> ids = {7, bad, 8};
      const absl::Status st = s.Gather(ids, buf.data());
      ASSERT_EQ(st.code(), absl::StatusCode::kDataLoss) << c << " " << st;
      EXPECT_THAT(Msg(st),
                  HasSubstr(StrCat(path, ": ssd tier: cannot read row ", bad, " of table 't'")));
      EXPECT_THAT(Msg(st), HasSubstr("the file is shorter than at start-up"));
    }
    // Still serving the rows that exist, byte for byte.
    for (int round = 0; round < 2; ++round) {
      const std::vector<int64_t> ids = {1023, 0, 512};
      ASSERT_TRUE(s.Gather(ids, buf.data()).ok());
      for (size_t i = 0; i < ids.size(); ++i)
        EXPECT_EQ(0, std::memcmp(buf.data() + i * kRowBytes, KnownRow(ids[i]).data(), kRowBytes));
    }
  }
}

TEST(TableStoreFaultTest, MissingOrShortFileFailsStartUp) {
  const std::string path = SmallTable("short");
  TableStoreOptions opt;
  opt.tier = TableTier::kSsd;
  auto missing = OpenTableStoreFromFile(path + ".gone", "t", "", opt);
  EXPECT_THAT(Msg(missing.status()), HasSubstr(path + ".gone"));
  fs::resize_file(path, fs::file_size(path) - 1);
  for (TableTier tier : {TableTier::kMmap, TableTier::kRam, TableTier::kSsd}) {
    opt.tier = tier;
    auto store = OpenTableStoreFromFile(path, "t", "", opt);
    ASSERT_FALSE(store.ok());
    EXPECT_THAT(Msg(store.status()), HasSubstr(path));
  }
}

int OpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST(TableStoreFaultTest, NoDescriptorLeaks) {
  const std::string path = SmallTable("fds");
  auto one_round = [&] {
    for (int c = 0; c < 5; ++c) {
      TableStoreOptions opt;
      opt.tier = c == 0 ? TableTier::kMmap : c == 1 ? TableTier::kRam : TableTier::kSsd;
      opt.direct_io = c == 3;
      opt.cache_bytes = c == 4 ? 64 << 10 : 0;
      auto store = OpenTableStoreFromFile(path, "t", "", opt);
      ASSERT_TRUE(store.ok()) << store.status();
      std::vector<std::byte> buf(kRowBytes);
      const std::vector<int64_t> ids = {4095};
      ASSERT_TRUE((*store)->Gather(ids, buf.data()).ok());
    }
  };
  one_round();  // first-use allocations of the runtime
  const int before = OpenFds();
  for (int i = 0; i < 10; ++i) one_round();
  EXPECT_EQ(OpenFds(), before);
}

TEST(TableStoreRamTest, MlockFailureNamesTheLimit) {
  const std::string path = SmallTable("mlock");
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_MEMLOCK, &old), 0);
  rlimit low = old;
  low.rlim_cur = 0;
  ASSERT_EQ(::setrlimit(RLIMIT_MEMLOCK, &low), 0);
  TableStoreOptions opt;
  opt.tier = TableTier::kRam;
  opt.mlock = true;
  auto store = OpenTableStoreFromFile(path, "t", "", opt);
  ::setrlimit(RLIMIT_MEMLOCK, &old);
  if (store.ok()) {  // privileged (CAP_IPC_LOCK): the limit does not apply
    std::vector<std::byte> buf(kRowBytes);
    const std::vector<int64_t> ids = {4095};
    ASSERT_TRUE((*store)->Gather(ids, buf.data()).ok());
    EXPECT_EQ(buf, KnownRow(4095));
  } else {
    EXPECT_THAT(Msg(store.status()), HasSubstr(path + ": ram tier: mlock of "));
    EXPECT_THAT(Msg(store.status()), HasSubstr("RLIMIT_MEMLOCK is 0.00 GB (0 bytes)"));
  }
}

}  // namespace
}  // namespace engram
