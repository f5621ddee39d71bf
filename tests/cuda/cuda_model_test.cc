// The whole model on CudaBackend against CpuBackend: the forward pass of tiny generated models
// through a multi-step scenario (chunked prefill, decodes, a restart, a late sequence), the
// engine serving a request on the device with its KV cache sized from gpu_memory_utilization,
// and the backend registry choosing CUDA. Without a device every test is skipped.
//
// Weights are bf16 on both sides (`--dtype bfloat16`): CudaBackend::Resident converts f32
// weights to bf16 for its GEMM while the CPU would multiply the f32 originals, so an f32 model
// would compare two different models, not two backends. What remains is the device's
// activation rounding: every Linear converts its input to bf16 (ConvertToBf16, 8 significant
// bits, unit roundoff 2^-9), multiplies on tensor cores with fp32 accumulation and returns
// fp32; everything else (norms, RoPE, attention, Engram gate and conv, the residual stream)
// stays fp32 on both sides and differs only in summation order (~k 2^-24, negligible here).
//
// Tolerances, with R = 4 L + E + 1 roundings on the way to the logits (L blocks of four
// Linear-input roundings each: q/k/v share xn, then o, gate/up share xn, then down; E Engram
// modules, whose key and value projections share one rounding of the fetched rows; the LM head):
//  - Logits. One rounding perturbs each input of its GEMM by at most 2^-9 relative, hence the
//    output by ~2^-9 relative (random-sign terms; exactly so for a single dominant term). The
//    generated models keep every stage O(1) in gain (weights_gen.cc: unit-RMS Linears behind an
//    RMSNorm, residual branches scaled by 1/sqrt(2L), attention scores O(1) so the softmax does
//    not amplify), so a relative error of the stream reaches the logits about unchanged, and a
//    random error direction moves the row's largest entries like the rest. Independent roundings
//    add in quadrature (~sqrt(R/3) 2^-9 expected); the bound takes all R at full size and adding
//    in the same direction:
//      max_j |gpu_j - cpu_j| <= e max_j |cpu_j|,   e = R 2^-9,   per logit row.
//    For the tiny preset (L = 2, E = 2) e = 11/512 = 2.1% of the row's largest logit (~6:
//    logits have standard deviation ~2). A CPU emulation of the device's rounding (CpuBackend
//    with every Linear input rounded to bf16) measures 0.33-0.37% on the three shapes below, 6x
//    under the bound (so even truncating instead of rounding, 2^-8 per conversion, would pass);
//    the same emulation with one short-conv tap dropped (a history-ring bug) measures 12-17%.
//  - Argmax. The bound lets the top token change only where the CPU's top two are within 2 e of
//    the row's largest |logit| (checked, with the gap printed). Typical errors are far smaller
//    (~0.01 absolute), while the gap between the top two of V ~ 512 logits of deviation 2 is
//    ~0.5 on average, so a flip has a probability of a few percent per row: >= 90% of rows
//    must agree (the emulation: 84-86 of 86).
//  - Gates alpha = sigmoid(sign(s) sqrt|s|), s = <q, k> / sqrt(D) of the RMS-normalised hidden
//    state and key. Their inputs carry at most the logits' relative error e (the key one
//    rounding, the hidden state what the blocks before the module add); an error vector
//    unrelated to the other vector moves s by about e RMS(q) RMS(k) = e per side, so
//    |ds| <= 2e. sigmoid' <= 1/4, and |sqrt a - sqrt b| <= sqrt|a - b| (sqrt(2|a - b|) across
//    zero), so |d alpha| <= sqrt(2 |ds|) / 4 for every gate (0.073 for e = 2.1%); where
//    |s| > |ds| the square root is smooth and |d alpha| <= |ds| / (4 sqrt|s|), with
//    sqrt|s| = |logit(alpha)| read off the CPU's gate. Each gate must meet the smaller of the
//    two (the emulation's worst gate: 0.004).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engram/kernels/backend.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "server/engine/engine.h"
#include "server/model/model_loader.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

using cuda::CudaBackend;

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

// bf16's unit roundoff: the largest relative error of one rounding to 8 significant bits.
constexpr double kBf16U = 1.0 / 512;

// The device backend, or nullptr with `skip` set when cuBLASLt does not load (a device without
// the library is a machine the backend registry also falls back on) and `error` otherwise.
std::unique_ptr<CudaBackend> CreateCuda(std::string* skip, std::string* error) {
  auto b = CudaBackend::Create(0, error);
  if (b == nullptr && error->find("cuBLASLt") != std::string::npos) *skip = *error;
  return b;
}

#define ENGRAM_CREATE_CUDA_OR_SKIP(var)                                        \
  std::unique_ptr<CudaBackend> var;                                            \
  do {                                                                         \
    std::string engram_skip_, engram_error_;                                   \
    var = CreateCuda(&engram_skip_, &engram_error_);                           \
    if (var == nullptr && !engram_skip_.empty()) GTEST_SKIP() << engram_skip_; \
    ASSERT_NE(var, nullptr) << engram_error_;                                  \
  } while (0)

std::vector<int32_t> Tokens(int n, int vocab, int salt) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 7919 + 29 + salt * 257) % vocab);
  return t;
}

struct Trace {
  std::vector<float> logits;  // [rows][vocab]
  std::vector<float> gates;   // the gates of every other step, slot after slot
  int64_t steps = 0;
};

// Three sequences through every path of the KV cache and the Engram history ring: chunked
// prefill of two side by side (with logits for every token of some chunks), decodes with a
// third sequence joining mid-way with a prefill chunk of its own, a restart of one sequence from
// scratch (as a preemption does: its ring holds stale rows it must not read) batched with the
// others' decodes, and a last step of all three. The tokens are fixed, not sampled, so both
// backends see the same inputs whatever their logits.
Trace RunScenario(Model& model) {
  Trace tr;
  const int V = model.config().vocab_size;
  const auto a = Tokens(40, V, 1), b = Tokens(30, V, 2), c = Tokens(20, V, 3);
  KvCache kv(model.config(), 64, 4, model.backend());
  SequenceState sa, sb, sc;
  for (SequenceState* s : {&sa, &sb, &sc}) model.ResetState(*s);
  ForwardOutput out;
  std::vector<std::vector<float>> gates;
  ForwardDump dump;
  dump.gates = &gates;
  auto span = [](const std::vector<int32_t>& v, size_t at, size_t n) {
    return std::span<const int32_t>(v.data() + at, n);
  };
  // Each entry reserves its KV blocks first; gates are dumped on every other step (their
  // Downloads are sync points, and the steps without them must work without one mid-step).
  auto step = [&](std::vector<StepEntry> entries) {
    for (const StepEntry& e : entries)
      ASSERT_TRUE(
          kv.Reserve(*e.state, e.state->num_cached + static_cast<int64_t>(e.tokens.size())).ok());
    const bool with_gates = tr.steps++ % 2 == 1;
    gates.clear();
    ASSERT_TRUE(model.Forward(entries, kv, &out, with_gates ? &dump : nullptr).ok());
    tr.logits.insert(tr.logits.end(), out.logits.begin(), out.logits.end());
    if (with_gates)
      for (const auto& g : gates) tr.gates.insert(tr.gates.end(), g.begin(), g.end());
  };
  step({{&sa, span(a, 0, 12), true}, {&sb, span(b, 0, 5), false}});
  step({{&sb, span(b, 5, 8), true}, {&sa, span(a, 12, 9), false}});
  step({{&sa, span(a, 21, 7), true}, {&sb, span(b, 13, 1), false}});
  // Decodes; c joins at the third with a prefill chunk, then decodes too.
  for (int i = 0; i < 8; ++i) {
    std::vector<StepEntry> e{{&sb, span(b, 14 + i, 1), false}, {&sa, span(a, 28 + i, 1), false}};
    if (i == 2) e.push_back({&sc, span(c, 0, 6), true});
    if (i > 2) e.push_back({&sc, span(c, 6 + (i - 3), 1), false});
    step(e);
  }
  // b starts over from scratch next to the others' decodes.
  kv.Release(sb);
  model.ResetState(sb);
  step({{&sa, span(a, 36, 1), false}, {&sb, span(b, 0, 22), true}, {&sc, span(c, 11, 1), false}});
  step({{&sc, span(c, 12, 1), false}, {&sb, span(b, 22, 1), false}, {&sa, span(a, 37, 3), true}});
  kv.Release(sa);
  kv.Release(sb);
  kv.Release(sc);
  return tr;
}

// R of the header comment.
int Roundings(const ModelConfig& c) {
  return 4 * c.num_hidden_layers + static_cast<int>(c.engram.layer_ids.size()) + 1;
}

// Compares two traces of RunScenario with the header comment's tolerances.
void ExpectCloseTraces(const Trace& want, const Trace& got, const ModelConfig& c) {
  const int64_t V = c.vocab_size;
  ASSERT_EQ(got.logits.size(), want.logits.size());
  ASSERT_EQ(got.gates.size(), want.gates.size());
  ASSERT_FALSE(want.logits.empty());
  ASSERT_EQ(want.logits.size() % V, 0u);
  ASSERT_FALSE(want.gates.empty());
  const double e = Roundings(c) * kBf16U;

  const int64_t rows = static_cast<int64_t>(want.logits.size()) / V;
  int64_t agree = 0, bad_rows = 0;
  double worst = 0;  // the largest max|diff| / max|logit| of any row
  for (int64_t r = 0; r < rows; ++r) {
    const float* w = want.logits.data() + r * V;
    const float* g = got.logits.data() + r * V;
    double scale = 0, diff = 0;
    for (int64_t j = 0; j < V; ++j) {
      scale = std::max(scale, std::fabs(double{w[j]}));
      const double d = std::fabs(double{g[j]} - w[j]);
      diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    }
    worst = std::max(worst, diff / scale);
    if (!(diff <= e * scale) && ++bad_rows <= 5)
      ADD_FAILURE() << "logit row " << r << ": max |gpu - cpu| " << diff << " > " << e
                    << " * max |logit| " << scale;
    const int64_t wa = std::max_element(w, w + V) - w, ga = std::max_element(g, g + V) - g;
    if (wa == ga) {
      ++agree;
    } else {
      // Only a near-tie may flip: the CPU's own logits of the two tokens within twice the bound.
      const double gap = double{w[wa]} - w[ga];
      EXPECT_LE(gap, 2 * e * scale) << "logit row " << r << ": argmax " << ga << " on the GPU, "
                                    << wa << " on the CPU, which has them " << gap << " apart";
    }
  }
  EXPECT_EQ(bad_rows, 0) << "of " << rows << " logit rows";
  EXPECT_GE(agree * 10, rows * 9) << agree << " of " << rows << " rows agree on the argmax";

  const double ds = 2 * e;
  int64_t bad_gates = 0;
  double worst_gate = 0;
  for (size_t i = 0; i < want.gates.size(); ++i) {
    const double alpha = want.gates[i];
    const double root_s = std::fabs(std::log(alpha / (1 - alpha)));  // sqrt|s|
    double tol = std::sqrt(2 * ds) / 4;
    if (std::isfinite(root_s) && root_s * root_s > ds) tol = std::min(tol, ds / (4 * root_s));
    const double d = std::fabs(double{got.gates[i]} - alpha);
    worst_gate = std::max(worst_gate, std::isnan(d) ? INFINITY : d);
    if (!(d <= tol) && ++bad_gates <= 5)
      ADD_FAILURE() << "gate " << i << ": gpu " << got.gates[i] << " cpu " << alpha << " tol "
                    << tol;
  }
  EXPECT_EQ(bad_gates, 0) << "of " << want.gates.size() << " gates";
  std::printf(
      "%lld logit rows: worst max|diff|/max|logit| %.3g (bound %.3g), argmax agrees on "
      "%lld; %zu gates: worst |diff| %.3g\n",
      static_cast<long long>(rows), worst, e, static_cast<long long>(agree), want.gates.size(),
      worst_gate);
}

class CudaModel : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModel, LogitsAndGatesMatchCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  ENGRAM_CREATE_CUDA_OR_SKIP(gpu);
  const std::string dir = testing_util::CreateTinyModel("cuda_model", GetParam());
  CpuBackend cpu(2);
  auto host = LoadModelDir(dir, &cpu);
  ASSERT_TRUE(host.ok()) << host.status();
  const Trace want = RunScenario(*host->model);
  ASSERT_FALSE(HasFatalFailure());

  auto dev = LoadModelDir(dir, gpu.get());
  ASSERT_TRUE(dev.ok()) << dev.status();
  const Trace got = RunScenario(*dev->model);
  ASSERT_FALSE(HasFatalFailure());
  ExpectCloseTraces(want, got, host->model->config());
}

// Decode steps as CUDA graphs (model.h, StepGraphOptions): four sequences prefilled, then 30
// decode steps of changing batches (padded to 2 and 4 rows) whose longest context crosses from
// the 64-position bucket into the 128 one, then one step with gates dumped (run directly, as
// every dumped step is). The fixed tokens make the trace comparable with the CPU's.
Trace RunDecodes(Model& model) {
  Trace tr;
  const int V = model.config().vocab_size;
  const std::vector<int> prompt = {5, 17, 33, 50};
  const int n = static_cast<int>(prompt.size());
  KvCache kv(model.config(), 96, 4, model.backend());
  std::vector<SequenceState> st(n);
  std::vector<std::vector<int32_t>> toks;
  for (int s = 0; s < n; ++s) {
    model.ResetState(st[s]);
    toks.push_back(Tokens(prompt[s] + 32, V, s + 5));
  }
  ForwardOutput out;
  std::vector<std::vector<float>> gates;
  ForwardDump dump;
  dump.gates = &gates;
  auto run = [&](const std::vector<StepEntry>& e, const ForwardDump* d) {
    for (const StepEntry& x : e)
      ASSERT_TRUE(
          kv.Reserve(*x.state, x.state->num_cached + static_cast<int64_t>(x.tokens.size())).ok());
    ASSERT_TRUE(model.Forward(e, kv, &out, d).ok());
    ++tr.steps;
    tr.logits.insert(tr.logits.end(), out.logits.begin(), out.logits.end());
  };
  auto next = [&](int s, int count) {
    return std::span<const int32_t>(toks[s].data() + st[s].num_cached, count);
  };
  std::vector<StepEntry> pre;
  for (int s = 0; s < n; ++s) pre.push_back({&st[s], next(s, prompt[s]), false});
  run(pre, nullptr);
  for (int step = 0; step < 30; ++step) {
    std::vector<StepEntry> e;
    for (int s = 0; s < n; ++s)
      if ((step + s) % 3 != 0) e.push_back({&st[s], next(s, 1), false});
    run(e, nullptr);
  }
  std::vector<StepEntry> last;
  for (int s = 0; s < n; ++s) last.push_back({&st[s], next(s, 1), false});
  run(last, &dump);
  for (const auto& g : gates) tr.gates.insert(tr.gates.end(), g.begin(), g.end());
  for (SequenceState& s : st) kv.Release(s);
  return tr;
}

TEST_P(CudaModel, GraphDecodesMatchCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  ENGRAM_CREATE_CUDA_OR_SKIP(gpu);
  const std::string dir = testing_util::CreateTinyModel("cuda_graphs", GetParam());
  CpuBackend cpu(2);
  auto host = LoadModelDir(dir, &cpu);
  ASSERT_TRUE(host.ok()) << host.status();
  const Trace want = RunDecodes(*host->model);
  ASSERT_FALSE(HasFatalFailure());

  auto dev = LoadModelDir(dir, gpu.get());
  ASSERT_TRUE(dev.ok()) << dev.status();
  Model& model = *dev->model;
  ASSERT_TRUE(model.ConfigureStepGraphs({StepGraphOptions::Mode::kAuto, 4}).ok());
  ASSERT_TRUE(model.step_graphs_on()) << "auto: a device backend gets graphs";
  const Trace got = RunDecodes(model);
  ASSERT_FALSE(HasFatalFailure());
  const StepGraphStats stats = model.graph_stats();
  // 30 decode steps in four shapes ((2|4) rows, 64|128 positions), each run directly once;
  // a scratch buffer growing at a later shape's first step may send an earlier shape's graphs
  // back to recording (stale), which costs a step each.
  EXPECT_GT(stats.graph_steps, 15u) << stats.recorded << " recorded, " << stats.stale << " stale";
  std::printf("graph steps %llu, segments recorded %llu, stale launches %llu\n",
              static_cast<unsigned long long>(stats.graph_steps),
              static_cast<unsigned long long>(stats.recorded),
              static_cast<unsigned long long>(stats.stale));
  ExpectCloseTraces(want, got, host->model->config());
}

// The forward-pass tests' three shapes (testing_util::TinyModelShapes), all with bf16 weights
// (see the header comment).
std::vector<std::string> Bf16Shapes() {
  std::vector<std::string> shapes;
  for (std::string s : testing_util::TinyModelShapes()) {
    if (s.find("--dtype ") == std::string::npos)
      s += s.empty() ? "--dtype bfloat16" : " --dtype bfloat16";
    shapes.push_back(s);
  }
  return shapes;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaModel, ::testing::ValuesIn(Bf16Shapes()));

// Collects a request's output until its last message (engine_test.cc's Collector, reduced).
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<RequestHandle> handle;
  RequestOutput all;

  RequestOutput Wait() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(120), [&] {
      RequestOutput o;
      while (handle->Take(&o)) all.MergeFrom(std::move(o));
      return all.finished();
    });
    return all;
  }
};

RequestOutput RunOne(Engine& e, EngineRequest r) {
  auto c = std::make_shared<Collector>();
  std::weak_ptr<Collector> weak = c;
  auto h = e.Submit(std::move(r), [weak] {
    if (auto c = weak.lock()) {
      std::lock_guard<std::mutex> l(c->mu);
      c->cv.notify_all();
    }
  });
  EXPECT_TRUE(h.ok()) << h.status();
  if (!h.ok()) return {};
  {
    std::lock_guard<std::mutex> l(c->mu);
    c->handle = *h;
  }
  return c->Wait();
}

// The engine on the device, KV cache sized from gpu_memory_utilization: the KV cache takes
// what the utilization leaves after what is in use and a step's activations, so it has blocks
// and stays within that share of the device; a greedy request runs to its length and frees its
// blocks. 0.25, not the default 0.9, because ctest runs the other cuda tests beside this one on
// the same device.
TEST(CudaEngine, GreedyRequestWithKvSizedFromDeviceMemory) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  ENGRAM_CREATE_CUDA_OR_SKIP(gpu);
  // f32 weights here (Resident converts them): this is the model as engramd would serve it.
  auto m = LoadModelDir(testing_util::CreateTinyModel("cuda_engine"), gpu.get());
  ASSERT_TRUE(m.ok()) << m.status();
  EngineOptions options;
  ASSERT_EQ(options.kv_cache_bytes, 0u);
  ASSERT_EQ(options.kv_blocks, 0);
  constexpr double kUtilization = 0.25;
  options.gpu_memory_utilization = kUtilization;
  // What is in use before the engine exists (this process's weights and CUDA context, and any
  // other process on the device), as the engine sees it: the allocator's cached blocks count as
  // free.
  const auto [free_before, total] = gpu->FreeMemory();
  const uint64_t used_before = total - free_before;
  auto engine = Engine::Create(m->model.get(), m->tokenizer.get(), options, nullptr);
  ASSERT_TRUE(engine.ok()) << engine.status();
  Engine& e = **engine;

  size_t driver_free = 0, driver_total = 0;
  ASSERT_EQ(cudaMemGetInfo(&driver_free, &driver_total), cudaSuccess);
  ASSERT_EQ(driver_total, total);
  const double budget = kUtilization * static_cast<double>(total);
  const uint64_t per_block = KvCache::BytesPerBlock(m->model->config(), e.options().block_size);
  const double kv_bytes =
      static_cast<double>(e.options().kv_blocks) * static_cast<double>(per_block);
  EXPECT_GT(e.options().kv_blocks, 0);
  EXPECT_LE(kv_bytes, budget) << e.options().kv_blocks << " blocks of " << per_block
                              << " bytes, device total " << total;
  // With what was in use it still fits: the engine also kept a step's activations and 256 MiB
  // of slack out of the cache, a margin that also covers another process (a parallel ctest)
  // freeing memory between the two measurements. A device-wide check after the request would
  // not be reliable under a parallel ctest, whose other processes allocate meanwhile.
  EXPECT_LE(kv_bytes + static_cast<double>(used_before), budget)
      << "KV " << kv_bytes << " bytes on top of " << used_before << " in use, device total "
      << total;

  const int kMaxNew = 16;
  EngineRequest r;
  r.id = "greedy";
  r.prompt = Tokens(11, m->model->config().vocab_size, 4);
  r.params.stopping.max_new_tokens = kMaxNew;
  r.params.stopping.ignore_eos = true;
  r.params.sampling.temperature = 0.0f;
  const RequestOutput o = RunOne(e, r);
  EXPECT_TRUE(o.error.ok()) << o.error;
  EXPECT_EQ(o.finish, FinishReason::kLength);
  EXPECT_EQ(o.token_ids.size(), static_cast<size_t>(kMaxNew));
  EXPECT_EQ(o.usage.completion_tokens, kMaxNew);
  EXPECT_EQ(e.Snapshot().used_blocks, 0);
}

// Sets or clears (nullptr) ENGRAM_BACKEND for its lifetime, then restores it: scripts/test.sh
// exports ENGRAM_BACKEND=cpu to every test process, which kAuto obeys.
class ScopedBackendEnv {
 public:
  explicit ScopedBackendEnv(const char* value) {
    if (const char* old = std::getenv("ENGRAM_BACKEND"); old != nullptr) old_ = old;
    if (value != nullptr)
      ::setenv("ENGRAM_BACKEND", value, 1);
    else
      ::unsetenv("ENGRAM_BACKEND");
  }
  ~ScopedBackendEnv() {
    if (old_.has_value())
      ::setenv("ENGRAM_BACKEND", old_->c_str(), 1);
    else
      ::unsetenv("ENGRAM_BACKEND");
  }
  ScopedBackendEnv(const ScopedBackendEnv&) = delete;
  ScopedBackendEnv& operator=(const ScopedBackendEnv&) = delete;

 private:
  std::optional<std::string> old_;
};

// With a device present the registry picks CUDA, asked for or left to choose (kAuto with no
// ENGRAM_BACKEND); the one acceptable failure is cuBLASLt not loading, a skip with the
// registry's reason. ENGRAM_BACKEND=cpu still pins the CPU on a GPU host.
TEST(CudaRegistry, PicksCudaWhenADeviceIsPresent) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  {
    BackendChoice asked = CreateBackend(2, BackendKind::kCuda);
    if (asked.backend == nullptr && asked.reason.find("cuBLASLt") != std::string::npos)
      GTEST_SKIP() << asked.reason;
    ASSERT_NE(asked.backend, nullptr) << asked.reason;
    EXPECT_EQ(asked.backend->name(), "cuda") << asked.reason;
  }
  {
    ScopedBackendEnv env(nullptr);
    BackendChoice choice = CreateBackend(2);
    ASSERT_NE(choice.backend, nullptr) << choice.reason;
    EXPECT_EQ(choice.backend->name(), "cuda") << choice.reason;
    EXPECT_FALSE(choice.backend->host_memory());
    EXPECT_EQ(choice.reason.rfind("CUDA backend on ", 0), 0u) << choice.reason;
  }
  {
    ScopedBackendEnv env("cpu");
    BackendChoice choice = CreateBackend(2);
    ASSERT_NE(choice.backend, nullptr) << choice.reason;
    EXPECT_EQ(choice.backend->name(), "cpu") << choice.reason;
  }
}

}  // namespace
}  // namespace engram
