// The prefetcher and the table tiers must not change a single bit of the model's output:
// rows fetched asynchronously, synchronously, from the RAM copy or through the SSD tier and its
// row cache are the same bytes, dequantised by the same code, so logits are compared exactly.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/model/model_loader.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

using testing_util::CreateTinyModel;

// Logits of two sequences run as a chunked prefill mixed with decodes.
std::vector<float> RunSteps(const std::string& dir, const EngramMemoryOptions& mem,
                            uint64_t* lookups = nullptr, uint64_t* unique = nullptr) {
  BackendChoice be = CreateBackend(2, BackendKind::kCpu);
  auto loaded = LoadModelDir(dir, be.backend.get(), mem);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (!loaded.ok()) return {};
  Model& model = *loaded->model;
  const int vocab = model.config().vocab_size;
  std::vector<int32_t> a, b;
  for (int i = 0; i < 30; ++i) a.push_back((i * 7919 + 3) % vocab);
  for (int i = 0; i < 12; ++i) b.push_back((i % 3) * 5 + 1);  // repeats: de-duplication matters
  KvCache kv(model.config(), 32, 4, model.backend());
  SequenceState sa, sb;
  model.ResetState(sa);
  model.ResetState(sb);
  EXPECT_TRUE(kv.Reserve(sa, 30).ok());
  EXPECT_TRUE(kv.Reserve(sb, 12).ok());
  std::vector<float> all;
  ForwardOutput out;
  size_t ia = 0, ib = 0;
  while (ia < a.size() || ib < b.size()) {
    std::vector<StepEntry> step;
    const size_t na = std::min<size_t>(ia < 8 ? 8 : 1, a.size() - ia);
    const size_t nb = std::min<size_t>(5, b.size() - ib);
    if (na > 0) step.push_back({&sa, std::span<const int32_t>(a.data() + ia, na), true});
    if (nb > 0) step.push_back({&sb, std::span<const int32_t>(b.data() + ib, nb), true});
    ia += na;
    ib += nb;
    EXPECT_TRUE(model.Forward(step, kv, &out).ok());
    all.insert(all.end(), out.logits.begin(), out.logits.end());
  }
  const PrefetchStats& s = model.prefetcher().stats();
  if (lookups != nullptr) *lookups = s.lookups.load();
  if (unique != nullptr) *unique = s.unique_rows.load();
  return all;
}

class PrefetchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefetchTest, EveryTierAndModeGivesBitIdenticalLogits) {
  // fp8 needs rows of a multiple of 32 values: 4 heads x 32.
  const std::string extra = GetParam() == "float8_e4m3" ? " --embed-per-ngram 128" : "";
  const std::string dir = CreateTinyModel(GetParam(), "--table-dtype " + GetParam() + extra);
  EngramMemoryOptions direct;
  direct.prefetch = false;
  uint64_t lookups = 0, unique = 0;
  const std::vector<float> ref = RunSteps(dir, direct, &lookups, &unique);
  ASSERT_FALSE(ref.empty());
  EXPECT_GT(lookups, unique);  // sequence b repeats n-grams: de-duplication saved reads

  struct Variant {
    const char* name;
    TableTier tier;
    uint64_t cache;
    CachePolicy policy;
    bool prefetch;
  };
  for (const Variant& v :
       {Variant{"mmap+prefetch", TableTier::kMmap, 0, CachePolicy::kLru, true},
        Variant{"ram+prefetch", TableTier::kRam, 0, CachePolicy::kLru, true},
        Variant{"ram sync", TableTier::kRam, 0, CachePolicy::kLru, false},
        Variant{"ssd+prefetch", TableTier::kSsd, 0, CachePolicy::kLru, true},
        Variant{"ssd+lru", TableTier::kSsd, 1 << 16, CachePolicy::kLru, true},
        Variant{"ssd+lfu sync", TableTier::kSsd, 1 << 16, CachePolicy::kLfu, false}}) {
    EngramMemoryOptions mem;
    mem.store.tier = v.tier;
    mem.store.cache_bytes = v.cache;
    mem.store.cache_policy = v.policy;
    mem.store.progress = false;
    mem.prefetch = v.prefetch;
    const std::vector<float> got = RunSteps(dir, mem);
    ASSERT_EQ(got.size(), ref.size()) << v.name;
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got[i], ref[i]) << v.name << " at " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(TableDtypes, PrefetchTest,
                         ::testing::Values("float32", "bfloat16", "float16", "float8_e4m3"));

// A store whose reads fail: the forward pass returns the error, the states do not advance, and
// the next step (with a healthy store) works.
class FailingStore final : public TableStore {
 public:
  explicit FailingStore(TableLayout l) { layout_ = l; }
  std::string_view tier_name() const override { return "failing"; }
  absl::Status Gather(std::span<const int64_t>, std::byte*) override {
    return absl::DataLossError("engram-layer-0.safetensors: injected read error");
  }
};

TEST(PrefetcherErrors, ReadErrorFailsTheStepAndFreesItsBuffer) {
  EngramConfig c;
  c.layer_ids = {0};
  c.max_ngram_size = 2;
  c.n_head_per_ngram = 1;
  c.n_embed_per_ngram = 4;
  c.engram_vocab_size = {10};
  c.multipliers[0] = {3, 5};
  c.head_vocab_sizes[0] = {{11}};
  NgramHasher hasher(c);
  std::vector<int64_t> compress = {0, 1, 2, 3};
  for (bool async : {true, false}) {
    std::vector<std::unique_ptr<TableStore>> stores;
    stores.push_back(std::make_unique<FailingStore>(TableLayout{11, 4, DType::kF32, 16, 16}));
    EngramPrefetcher p(hasher, compress, 0, std::move(stores), async);
    // More steps than buffers: each failed step must release its buffer or Submit would block.
    for (int i = 0; i < 5; ++i) {
      auto t = p.Submit(StepTokens{{{}}, {{1, 2, 3}}});
      auto e = p.Wait(t, 0);
      ASSERT_FALSE(e.ok());
      EXPECT_EQ(e.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_NE(std::string(e.status().message()).find("injected read error"), std::string::npos);
      const StepRows rows = p.Finish(t);
      EXPECT_EQ(rows.compressed.at(0), (std::vector<int64_t>{1, 2, 3}));
    }
    EXPECT_EQ(p.stats().errors.load(), 5u) << "async=" << async;
  }
}

}  // namespace
}  // namespace engram
