// The model's forward pass on a backend whose memory is not the host's (SeparateMemoryBackend):
// every pointer an op receives must be backend memory, the logits and gates must equal the
// host-memory CPU backend's bit for bit (the same CPU math runs underneath, so any difference is
// a missing upload, a stale buffer or a wrong address), and nothing may stay allocated once the
// states, the cache and the model are gone. This is the CPU-side proof of the layout the CUDA
// backend relies on.
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

std::vector<int32_t> Tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7919 + 13 + salt * 131) % vocab);
  return t;
}

struct Trace {
  std::vector<float> logits;
  std::vector<float> gates;
};

// Chunked prefill of two sequences side by side, decode steps, a restart of one sequence (as a
// preemption does) and a third sequence joining late: every path through the history ring.
Trace RunScenario(Model& model) {
  Trace tr;
  const int V = model.config().vocab_size;
  const auto a = Tokens(23, V, 1), b = Tokens(11, V, 2), c = Tokens(7, V, 3);
  KvCache kv(model.config(), 48, 4, model.backend());
  SequenceState sa, sb, sc;
  for (SequenceState* s : {&sa, &sb, &sc}) model.ResetState(*s);
  EXPECT_TRUE(kv.Reserve(sa, 23).ok());
  EXPECT_TRUE(kv.Reserve(sb, 11).ok());
  EXPECT_TRUE(kv.Reserve(sc, 7).ok());
  ForwardOutput out;
  std::vector<std::vector<float>> gates;
  ForwardDump dump;
  dump.gates = &gates;
  // Gates on every other step only: their Downloads are sync points, and the steps without
  // them must show that nothing is uploaded into memory still in use.
  int n = 0;
  auto step = [&](std::vector<StepEntry> entries) {
    const bool with_gates = n++ % 2 == 1;
    ASSERT_TRUE(model.Forward(entries, kv, &out, with_gates ? &dump : nullptr).ok());
    tr.logits.insert(tr.logits.end(), out.logits.begin(), out.logits.end());
    if (with_gates)
      for (const auto& g : gates) tr.gates.insert(tr.gates.end(), g.begin(), g.end());
  };
  auto span = [](const std::vector<int32_t>& v, size_t at, size_t n) {
    return std::span<const int32_t>(v.data() + at, n);
  };
  step({{&sa, span(a, 0, 10), true}, {&sb, span(b, 0, 3), false}});
  step({{&sb, span(b, 3, 6), true}, {&sa, span(a, 10, 5), false}});
  for (size_t i = 15; i < 23; ++i) {
    std::vector<StepEntry> e{{&sa, span(a, i, 1), false}};
    if (i == 15) e.push_back({&sb, span(b, 9, 2), true});
    if (i >= 18) e.push_back({&sc, span(c, i - 18, 1), false});
    step(e);
  }
  // Restart b from scratch, as after a preemption: its ring holds stale rows it must not read.
  kv.Release(sb);
  model.ResetState(sb);
  EXPECT_TRUE(kv.Reserve(sb, 11).ok());
  step({{&sb, span(b, 0, 11), true}, {&sc, span(c, 5, 2), true}});
  kv.Release(sa);
  kv.Release(sb);
  kv.Release(sc);
  return tr;
}

// Every way Engram rows reach a device: floats gathered on the CPU, packed distinct rows
// gathered on the CPU and dequantised by the backend, and row ids only (the backend reads the
// RAM tier's table itself, as the zero-copy gather and the device row cache do).
struct PathCase {
  std::optional<EngramRowPath> path;  // nullopt: auto
  TableTier tier;
  const char* name;
  int uploads_per_slot;  // per step
};
const PathCase kPaths[] = {{EngramRowPath::kEmbeddings, TableTier::kMmap, "embeddings", 1},
                           {EngramRowPath::kPacked, TableTier::kSsd, "packed", 2},
                           {EngramRowPath::kIds, TableTier::kRam, "ids", 2},
                           {std::nullopt, TableTier::kRam, "auto_ram", 2}};

class SeparateMemoryModel : public ::testing::TestWithParam<std::tuple<std::string, PathCase>> {};

TEST_P(SeparateMemoryModel, SameLogitsAndGatesAsHostMemoryAndNoLeaks) {
  const auto& [shape, pc] = GetParam();
  const std::string dir = testing_util::CreateTinyModel("sep", shape);
  CpuBackend cpu(2);
  auto host = LoadModelDir(dir, &cpu);
  ASSERT_TRUE(host.ok()) << host.status();
  const Trace want = RunScenario(*host->model);

  testing_util::SeparateMemoryBackend sep;
  {
    EngramMemoryOptions memory;
    memory.store.tier = pc.tier;
    memory.store.progress = false;
    memory.row_path = pc.path;
    auto dev = LoadModelDir(dir, &sep, memory);
    ASSERT_TRUE(dev.ok()) << dev.status();
    const int slots = static_cast<int>(dev->model->config().engram.layer_ids.size());
    // Product-key layers whose rows the host fetches add their uploads (the row map and the
    // packed rows or the distinct ids); their tables on the ids path are opened by the backend.
    int pkm_fetching = 0, pkm_tables_opened = 0;
    if (const ProductKeyMemory* pm = dev->model->product_key()) {
      for (size_t i = 0; i < dev->model->config().product_key.layer_ids.size(); ++i)
        pkm_fetching += pm->host_fetch(static_cast<int>(i)) ? 1 : 0;
      for (size_t t = 0; t < pm->table_keys().size(); ++t)
        pkm_tables_opened += pm->table_path(t) == ProductKeyRowPath::kIds ? 1 : 0;
    }
    EXPECT_EQ(
        sep.tables_opened(),
        (pc.path == EngramRowPath::kEmbeddings || pc.path == EngramRowPath::kPacked ? 0 : slots) +
            pkm_tables_opened);
    const Trace got = RunScenario(*dev->model);
    ASSERT_EQ(got.logits.size(), want.logits.size());
    ASSERT_EQ(got.gates.size(), want.gates.size());
    EXPECT_EQ(want.gates.empty(), slots == 0);
    EXPECT_EQ(std::memcmp(got.logits.data(), want.logits.data(), want.logits.size() * 4), 0)
        << "logits differ";
    EXPECT_EQ(std::memcmp(got.gates.data(), want.gates.data(), want.gates.size() * 4), 0)
        << "gates differ";
    // One metadata upload per step plus the path's per memory layer, nothing per op.
    const int64_t steps = 11;
    EXPECT_EQ(sep.uploads(), steps * (1 + pc.uploads_per_slot * slots + 2 * pkm_fetching));
    if (pc.path == EngramRowPath::kIds || !pc.path.has_value()) {
      // The backend read exactly the distinct rows the prefetcher found, no more.
      uint64_t lookups = 0;
      for (int slot = 0; slot < slots; ++slot) {
        const BackendTable* t = dev->model->backend_table(slot);
        ASSERT_NE(t, nullptr);
        lookups += t->stats().lookups;
      }
      EXPECT_EQ(lookups, dev->model->prefetcher().stats().unique_rows.load());
    }
  }
  EXPECT_EQ(sep.violations(), 0);
  EXPECT_EQ(sep.live_non_resident(), 0u) << "buffers outlived the model, cache and states";
}

INSTANTIATE_TEST_SUITE_P(ShapesAndPaths, SeparateMemoryModel,
                         ::testing::Combine(::testing::ValuesIn(testing_util::TinyModelShapes()),
                                            ::testing::ValuesIn(kPaths)),
                         [](const ::testing::TestParamInfo<SeparateMemoryModel::ParamType>& info) {
                           return "shape" + std::to_string(info.index / std::size(kPaths)) + "_" +
                                  std::get<1>(info.param).name;
                         });

// The device reads rows itself only from a table in RAM: asking for it on another tier is an
// error that names the layer, the tier and the way out, before anything is allocated per step.
TEST(SeparateMemoryModelErrors, ZeroCopyNeedsTheRamTier) {
  const std::string dir = testing_util::CreateTinyModel("sep-err");
  testing_util::SeparateMemoryBackend sep;
  EngramMemoryOptions memory;
  memory.store.tier = TableTier::kSsd;
  memory.row_path = EngramRowPath::kIds;
  auto dev = LoadModelDir(dir, &sep, memory);
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(dev.status().message());
  EXPECT_NE(msg.find("Engram layer 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ssd tier"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--engram-device-path staged"), std::string::npos) << msg;
  EXPECT_EQ(sep.tables_opened(), 0);
}

}  // namespace
}  // namespace engram
