// Step graphs (model.h, StepGraphOptions) on the CPU: a decode step padded to its captured
// (batch, context) shape and replayed from its recording must give the logits the same step
// gives run op by op, bit for bit, on every Engram row path. The recording backends here run
// each recorded op's pointer checks when the graph is launched (separate_memory_backend.h), so a
// graph that kept a buffer that has since moved, read a host pointer, or raced an upload fails
// here instead of corrupting a GPU's results.
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "server/model/model_loader.h"
#include "tests/unit/separate_memory_backend.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

int32_t TokenAt(int seq, int i, int vocab) { return (i * 7919 + 13 + seq * 131) % vocab; }

// Five sequences prefilled together, then 40 decode steps in which a changing subset decodes
// (batches of 2 to 5, padded to 2, 4 and 8), the longest crossing from the 64-position context
// bucket into the 128 one, and one sequence restarted midway as a preemption does (a prefill
// step between graph steps, then decoding again from a cleared history).
std::vector<float> RunDecodes(Model& model) {
  const int V = model.config().vocab_size;
  const std::vector<int> prompt = {3, 9, 17, 30, 50};
  const int n = static_cast<int>(prompt.size());
  KvCache kv(model.config(), 96, 4, model.backend());
  std::vector<SequenceState> st(n);
  std::vector<std::vector<int32_t>> toks(n);
  for (int s = 0; s < n; ++s) {
    model.ResetState(st[s]);
    for (int i = 0; i < prompt[s] + 41; ++i) toks[s].push_back(TokenAt(s, i, V));
  }
  std::vector<float> logits;
  ForwardOutput out;
  auto run = [&](const std::vector<StepEntry>& e) {
    for (const StepEntry& x : e)
      EXPECT_TRUE(kv.Reserve(*x.state, x.state->num_cached + x.tokens.size()).ok());
    ASSERT_TRUE(model.Forward(e, kv, &out).ok());
    logits.insert(logits.end(), out.logits.begin(), out.logits.end());
  };
  auto next = [&](int s, int count) {
    return std::span<const int32_t>(toks[s].data() + st[s].num_cached, count);
  };
  std::vector<StepEntry> pre;
  for (int s = 0; s < n; ++s) pre.push_back({&st[s], next(s, prompt[s]), false});
  run(pre);
  for (int step = 0; step < 40; ++step) {
    if (step == 20) {  // restart sequence 1 from scratch
      kv.Release(st[1]);
      model.ResetState(st[1]);
      run({{&st[1], next(1, prompt[1]), false}});
    }
    std::vector<StepEntry> e;
    for (int s = 0; s < n; ++s)
      if ((step + s) % 4 != 0 || step % 7 == 0) e.push_back({&st[s], next(s, 1), false});
    run(e);
  }
  for (SequenceState& s : st) kv.Release(s);
  EXPECT_EQ(kv.free_blocks(), kv.num_blocks());
  return logits;
}

struct PathCase {
  std::optional<EngramRowPath> path;
  TableTier tier;
  const char* name;
};
const PathCase kPaths[] = {{EngramRowPath::kEmbeddings, TableTier::kMmap, "embeddings"},
                           {EngramRowPath::kPacked, TableTier::kSsd, "packed"},
                           {EngramRowPath::kIds, TableTier::kRam, "ids"}};

class StepGraphs : public ::testing::TestWithParam<std::tuple<std::string, PathCase>> {};

TEST_P(StepGraphs, ReplayedDecodesMatchDirectOnesBitForBit) {
  const auto& [shape, pc] = GetParam();
  const std::string dir = testing_util::CreateTinyModel("graphs", shape);
  EngramMemoryOptions memory;
  memory.store.tier = pc.tier;
  memory.store.progress = false;
  memory.row_path = pc.path;

  testing_util::SeparateMemoryBackend direct_backend;
  std::vector<float> want;
  {
    auto direct = LoadModelDir(dir, &direct_backend, memory);
    ASSERT_TRUE(direct.ok()) << direct.status();
    ASSERT_TRUE(direct->model->ConfigureStepGraphs({StepGraphOptions::Mode::kOff, 8}).ok());
    want = RunDecodes(*direct->model);
    EXPECT_EQ(direct_backend.graph_launches(), 0);
  }

  testing_util::SeparateMemoryBackend graph_backend;
  {
    auto graphed = LoadModelDir(dir, &graph_backend, memory);
    ASSERT_TRUE(graphed.ok()) << graphed.status();
    Model& model = *graphed->model;
    ASSERT_TRUE(model.ConfigureStepGraphs({StepGraphOptions::Mode::kAuto, 8}).ok());
    ASSERT_TRUE(model.step_graphs_on());
    EXPECT_EQ(model.graph_batch_sizes(), (std::vector<int>{1, 2, 4, 8}));
    const std::vector<float> got = RunDecodes(model);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
        << "replayed graphs changed the logits";
    const StepGraphStats stats = model.graph_stats();
    // A segment per Engram layer, and per product-key layer whose rows the host fetches.
    int segments = 1 + static_cast<int>(model.config().engram.layer_ids.size());
    if (const ProductKeyMemory* pm = model.product_key())
      for (size_t i = 0; i < model.config().product_key.layer_ids.size(); ++i)
        segments += pm->host_fetch(static_cast<int>(i)) ? 1 : 0;
    // Shapes (2|4|8, 64|128) each run once directly, then record every segment once.
    EXPECT_GT(stats.graph_steps, 20u);
    EXPECT_EQ(stats.recorded % segments, 0u);
    EXPECT_GE(stats.recorded, 3u * segments);
    EXPECT_EQ(stats.stale, 0u);
    EXPECT_EQ(graph_backend.graph_launches(), static_cast<int64_t>(stats.graph_steps) * segments);
  }
  EXPECT_EQ(graph_backend.violations(), 0);
  EXPECT_EQ(graph_backend.live_non_resident(), 0u) << "buffers outlived the model and cache";
}

INSTANTIATE_TEST_SUITE_P(ShapesAndPaths, StepGraphs,
                         ::testing::Combine(::testing::ValuesIn(testing_util::TinyModelShapes()),
                                            ::testing::ValuesIn(kPaths)),
                         [](const ::testing::TestParamInfo<StepGraphs::ParamType>& info) {
                           return "shape" + std::to_string(info.index / std::size(kPaths)) + "_" +
                                  std::get<1>(info.param).name;
                         });

// The host-memory CPU backend runs the same graph path when asked (kOn), and gives the logits
// of its direct steps: the prefetcher's floats are copied to a fixed buffer first.
TEST(StepGraphsCpu, OnForHostMemoryWhenAsked) {
  const std::string dir = testing_util::CreateTinyModel("graphs-cpu");
  CpuBackend cpu(2);
  auto m = LoadModelDir(dir, &cpu);
  ASSERT_TRUE(m.ok()) << m.status();
  Model& model = *m->model;
  ASSERT_TRUE(model.ConfigureStepGraphs({StepGraphOptions::Mode::kAuto, 8}).ok());
  EXPECT_FALSE(model.step_graphs_on()) << "auto: no graphs on host memory, they gain nothing";
  const std::vector<float> want = RunDecodes(model);
  ASSERT_TRUE(model.ConfigureStepGraphs({StepGraphOptions::Mode::kOn, 8}).ok());
  ASSERT_TRUE(model.step_graphs_on());
  const std::vector<float> got = RunDecodes(model);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
  EXPECT_GT(model.graph_stats().graph_steps, 20u);
}

TEST(StepGraphsCpu, BadBatchLimitIsRefusedWithTheFlag) {
  const std::string dir = testing_util::CreateTinyModel("graphs-bad");
  CpuBackend cpu(1);
  auto m = LoadModelDir(dir, &cpu);
  ASSERT_TRUE(m.ok()) << m.status();
  const absl::Status st = m->model->ConfigureStepGraphs({StepGraphOptions::Mode::kOn, 0});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("--max-graph-batch-size must be >= 1, got 0"), std::string::npos)
      << st;
}

}  // namespace
}  // namespace engram
