// The serving engine on a generated tiny model: continuous batching must not change what a
// request produces (seeded sampling reproduces alone-vs-batched, also through preemption), stop
// strings never leak, cancel frees the KV blocks, the queue bound and validation reject with the
// right codes, and draining refuses new work while finishing the old.
#include "server/engine/engine.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/model/model_loader.h"
#include "tests/unit/separate_memory_backend.h"
#include "tests/unit/tool_runner.h"

namespace engram {
namespace {

::testing::Environment* const kCleanup =
    ::testing::AddGlobalTestEnvironment(new testing_util::ProcessDirCleanup);

struct Loaded {
  BackendChoice backend = CreateBackend(2, BackendKind::kCpu);
  LoadedModel m;
};

Loaded& Tiny() {
  static Loaded* l = [] {
    auto* x = new Loaded;
    auto m = LoadModelDir(testing_util::CreateTinyModel("engine"), x->backend.backend.get());
    EXPECT_TRUE(m.ok()) << m.status();
    x->m = std::move(*m);
    return x;
  }();
  return *l;
}

struct CountingObserver : EngineObserver {
  std::atomic<int64_t> preemptions{0}, steps{0}, finished{0};
  void OnStep(const StepReport& s) override {
    preemptions += s.num_preemptions;
    ++steps;
  }
  void OnFirstToken(double) override {}
  void OnInterTokenLatency(double) override {}
  void OnRequestFinished(const RequestReport&) override { ++finished; }
};

std::unique_ptr<Engine> MakeEngine(EngineOptions o = {}, EngineObserver* observer = nullptr) {
  Loaded& t = Tiny();
  auto e = Engine::Create(t.m.model.get(), t.m.tokenizer.get(), o, observer);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

std::vector<int32_t> Prompt(int n, int salt) {
  const int vocab = Tiny().m.model->config().vocab_size;
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 7919 + salt * 104729 + 13) % vocab);
  return p;
}

// Collects every output of one request until its last message.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<RequestHandle> handle;
  RequestOutput all;
  int messages = 0;

  void Drain() {
    RequestOutput o;
    while (handle->Take(&o)) {
      all.MergeFrom(std::move(o));
      ++messages;
    }
  }
  RequestOutput Wait() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(120), [&] {
      Drain();
      return all.finished();
    });
    return all;
  }
};

absl::StatusOr<std::shared_ptr<Collector>> Submit(Engine& e, EngineRequest r) {
  auto c = std::make_shared<Collector>();
  std::weak_ptr<Collector> w = c;
  auto h = e.Submit(std::move(r), [w] {
    if (auto c = w.lock()) {
      std::lock_guard<std::mutex> l(c->mu);
      c->cv.notify_all();
    }
  });
  if (!h.ok()) return h.status();
  std::lock_guard<std::mutex> l(c->mu);
  c->handle = *h;
  return c;
}

RequestOutput RunOne(Engine& e, EngineRequest r) {
  auto c = Submit(e, std::move(r));
  EXPECT_TRUE(c.ok()) << c.status();
  return (*c)->Wait();
}

EngineRequest Request(int salt, int prompt_len, int max_new) {
  EngineRequest r;
  r.id = "r" + std::to_string(salt);
  r.prompt = Prompt(prompt_len, salt);
  r.params.stopping.max_new_tokens = max_new;
  r.params.stopping.ignore_eos = true;
  r.params.sampling.seed = static_cast<uint64_t>(salt) * 31 + 1;
  r.params.sampling.temperature = 0.3f * static_cast<float>(salt % 4);
  r.params.sampling.top_k = salt % 3 == 0 ? 0 : 20;
  r.params.sampling.top_p = salt % 2 == 0 ? 1.0f : 0.9f;
  r.params.sampling.repetition_penalty = salt % 5 == 0 ? 1.2f : 1.0f;
  return r;
}

TEST(Engine, GreedyRunEndsOnLengthWithMatchingText) {
  auto e = MakeEngine();
  EngineRequest r = Request(0, 9, 12);
  const RequestOutput o = RunOne(*e, r);
  EXPECT_EQ(o.finish, FinishReason::kLength);
  ASSERT_EQ(o.token_ids.size(), 12u);
  EXPECT_EQ(o.text, Tiny().m.tokenizer->DecodeLossy(o.token_ids, true));
  EXPECT_EQ(o.usage.prompt_tokens, 9);
  EXPECT_EQ(o.usage.completion_tokens, 12);
  EXPECT_GT(o.usage.e2e_seconds, 0);
  EXPECT_LE(o.usage.ttft_seconds, o.usage.e2e_seconds);
  EXPECT_EQ(e->Snapshot().used_blocks, 0);
}

// Alone, then 16 at once with different parameters and seeds: the same tokens each.
int64_t ExpectBatchedEqualsAlone(EngineOptions batched_options) {
  CountingObserver obs;
  std::vector<std::vector<int32_t>> alone;
  {
    auto e = MakeEngine();
    for (int i = 0; i < 16; ++i)
      alone.push_back(RunOne(*e, Request(i, 5 + 7 * i % 40, 20)).token_ids);
  }
  auto e = MakeEngine(batched_options, &obs);
  std::vector<std::shared_ptr<Collector>> cs;
  for (int i = 0; i < 16; ++i) {
    auto c = Submit(*e, Request(i, 5 + 7 * i % 40, 20));
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return -1;
    cs.push_back(*c);
  }
  for (int i = 0; i < 16; ++i) {
    const RequestOutput o = cs[static_cast<size_t>(i)]->Wait();
    EXPECT_EQ(o.finish, FinishReason::kLength) << i;
    EXPECT_EQ(o.token_ids, alone[static_cast<size_t>(i)]) << "request " << i;
  }
  EXPECT_EQ(e->Snapshot().used_blocks, 0);
  e.reset();  // joins the engine thread: obs is final
  EXPECT_EQ(obs.finished.load(), 16);
  return obs.preemptions.load();
}

TEST(Engine, BatchedSeededRequestsReproduceTheirAloneOutput) {
  EngineOptions o;
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 64;  // several steps of chunked prefill mixed with decodes
  EXPECT_EQ(ExpectBatchedEqualsAlone(o), 0);
}

TEST(Engine, PreemptionUnderKvPressureKeepsOutputs) {
  Loaded& t = Tiny();
  EngineOptions o;
  o.block_size = 4;
  o.max_model_len = 96;
  o.kv_blocks = 30;  // room for about two sequences: the rest wait or get preempted
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 32;
  ASSERT_LE(o.max_model_len, t.m.model->config().max_position_embeddings);
  EXPECT_GT(ExpectBatchedEqualsAlone(o), 0) << "the KV pressure should have preempted";
}

// The same with decode steps replayed from step graphs (on the CPU when asked): batches of
// changing size are padded, sequences are preempted and recomputed between graph steps, and
// every request still gets the tokens it gets alone without graphs.
TEST(Engine, StepGraphsUnderKvPressureKeepOutputs) {
  Loaded& t = Tiny();
  EngineOptions o;
  o.block_size = 4;
  o.max_model_len = 96;
  o.kv_blocks = 30;
  o.max_num_seqs = 16;
  o.max_num_batched_tokens = 32;
  o.graphs = {StepGraphOptions::Mode::kOn, 0};
  const uint64_t before = t.m.model->graph_stats().graph_steps;
  EXPECT_GT(ExpectBatchedEqualsAlone(o), 0) << "the KV pressure should have preempted";
  EXPECT_GT(t.m.model->graph_stats().graph_steps, before + 10);
  // The next engine (auto, on the CPU) turns them off again.
  auto e = MakeEngine();
  EXPECT_FALSE(t.m.model->step_graphs_on());
}

TEST(Engine, StopStringEndsTheTextBeforeIt) {
  auto e = MakeEngine();
  EngineRequest r = Request(3, 6, 40);
  r.params.sampling.temperature = 0;
  const RequestOutput full = RunOne(*e, r);
  ASSERT_GE(full.text.size(), 8u);
  // A stop string from the middle of the text, likely spanning a token boundary.
  const size_t at = full.text.size() / 2;
  const std::string stop = full.text.substr(at, 3);
  const size_t first = full.text.find(stop);
  r.params.stopping.stop = {"never-produced", stop};
  const RequestOutput o = RunOne(*e, r);
  EXPECT_EQ(o.finish, FinishReason::kStop);
  EXPECT_EQ(o.stop_reason, stop);
  EXPECT_EQ(o.text, full.text.substr(0, first));
  r.params.stopping.include_stop_str = true;
  EXPECT_EQ(RunOne(*e, r).text, full.text.substr(0, first + stop.size()));
  EXPECT_EQ(e->Snapshot().used_blocks, 0);
}

TEST(Engine, CancelFreesTheKvBlocks) {
  auto e = MakeEngine();
  EngineRequest r = Request(1, 30, 0);  // up to the context length
  auto c = Submit(*e, r);
  ASSERT_TRUE(c.ok());
  // Wait for the first token, then cancel.
  for (int i = 0; i < 2000 && (*c)->handle->cancelled() == false; ++i) {
    {
      std::lock_guard<std::mutex> l((*c)->mu);
      (*c)->Drain();
      if (!(*c)->all.token_ids.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GT(e->Snapshot().used_blocks, 0);
  (*c)->handle->Cancel();
  const RequestOutput o = (*c)->Wait();
  EXPECT_EQ(o.finish, FinishReason::kCancelled);
  EXPECT_TRUE(e->WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ(e->Snapshot().used_blocks, 0);
}

TEST(Engine, FullQueueIsResourceExhausted) {
  EngineOptions o;
  o.max_num_seqs = 1;
  o.max_queued_requests = 1;
  auto e = MakeEngine(o);
  auto a = Submit(*e, Request(1, 10, 0));
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 2000 && e->Snapshot().running == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto b = Submit(*e, Request(2, 10, 4));  // waits behind a
  ASSERT_TRUE(b.ok()) << b.status();
  auto c = Submit(*e, Request(3, 10, 4));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted) << c.status();
  EXPECT_NE(std::string(c.status().message()).find("--max-queued-requests"), std::string::npos);
  (*a)->handle->Cancel();
  EXPECT_EQ((*b)->Wait().finish, FinishReason::kLength);
}

TEST(Engine, InvalidRequestsNameTheField) {
  auto e = MakeEngine();
  const int vocab = Tiny().m.model->config().vocab_size;
  struct Case {
    std::function<void(EngineRequest&)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {[](EngineRequest& r) { r.params.sampling.temperature = -1; }, "sampling.temperature"},
      {[](EngineRequest& r) { r.params.sampling.temperature = std::nanf(""); },
       "sampling.temperature"},
      {[](EngineRequest& r) { r.params.sampling.top_p = 0; }, "sampling.top_p"},
      {[](EngineRequest& r) { r.params.sampling.top_p = 1.5f; }, "sampling.top_p"},
      {[](EngineRequest& r) { r.params.sampling.top_k = -1; }, "sampling.top_k"},
      {[](EngineRequest& r) { r.params.sampling.min_p = 2; }, "sampling.min_p"},
      {[](EngineRequest& r) { r.params.sampling.repetition_penalty = 0; },
       "sampling.repetition_penalty"},
      {[](EngineRequest& r) { r.params.stopping.stop = {""}; }, "stopping.stop[0]"},
      {[](EngineRequest& r) { r.params.stopping.stop.assign(17, "x"); }, "stopping.stop"},
      {[](EngineRequest& r) { r.params.logprobs = 21; }, "logprobs"},
      {[](EngineRequest& r) { r.prompt.clear(); }, "prompt"},
      {[vocab](EngineRequest& r) { r.prompt[1] = vocab; }, "prompt_token_ids[1]"},
      {[](EngineRequest& r) { r.params.stopping.max_new_tokens = 1 << 20; },
       "stopping.max_new_tokens"},
  };
  for (const Case& c : cases) {
    EngineRequest r = Request(1, 5, 4);
    c.edit(r);
    auto h = e->Submit(r, nullptr);
    ASSERT_FALSE(h.ok()) << c.field;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << h.status();
    EXPECT_NE(std::string(h.status().message()).find(c.field), std::string::npos) << h.status();
  }
  EXPECT_EQ(RunOne(*e, Request(1, 5, 4)).finish, FinishReason::kLength);  // still serving
}

TEST(Engine, DrainRefusesNewWorkAndFinishesOld) {
  auto e = MakeEngine();
  auto a = Submit(*e, Request(4, 8, 16));
  ASSERT_TRUE(a.ok());
  e->StopAccepting();
  auto b = e->Submit(Request(5, 8, 4), nullptr);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(e->WaitIdle(std::chrono::seconds(60)));
  EXPECT_EQ((*a)->Wait().token_ids.size(), 16u);
}

TEST(Engine, LogprobsAndGates) {
  auto e = MakeEngine();
  EngineRequest r = Request(2, 7, 5);
  r.params.sampling.temperature = 0;
  r.params.logprobs = 3;
  r.params.return_gates = true;
  const RequestOutput o = RunOne(*e, r);
  ASSERT_EQ(o.logprobs.size(), 5u);
  ASSERT_EQ(o.gates.size(), 5u);
  const EngramConfig& ec = Tiny().m.model->config().engram;
  for (size_t i = 0; i < 5; ++i) {
    const TokenLogprob& l = o.logprobs[i];
    ASSERT_EQ(l.top.size(), 3u);
    EXPECT_EQ(l.token, o.token_ids[i]);
    EXPECT_EQ(l.top[0].token, l.token);  // greedy takes the most likely token
    EXPECT_FLOAT_EQ(l.top[0].logprob, l.logprob);
    EXPECT_LE(l.logprob, 0);
    EXPECT_GE(l.top[1].logprob, l.top[2].logprob);
    ASSERT_EQ(o.gates[i].size(),
              ec.layer_ids.size() * static_cast<size_t>(Tiny().m.model->config().hc_mult));
    for (float g : o.gates[i]) {
      EXPECT_GE(g, 0);
      EXPECT_LE(g, 1);
    }
  }
}

}  // namespace
}  // namespace engram

namespace engram {
namespace {

// An SSD read failing mid-serving (the table file truncated under the running store) ends the
// requests of that step with kError naming the file and frees their KV; once the file is whole
// again the same engine serves the next request normally.
TEST(Engine, TableReadErrorFailsTheRequestNotTheServer) {
  namespace fs = std::filesystem;
  BackendChoice backend = CreateBackend(2, BackendKind::kCpu);
  EngramMemoryOptions mem;
  mem.store.tier = TableTier::kSsd;
  mem.store.progress = false;
  auto m = LoadModelDir(testing_util::CreateTinyModel("engine-fault"), backend.backend.get(), mem);
  ASSERT_TRUE(m.ok()) << m.status();
  const std::string table = m->model->files().TableFile(0).path();
  std::string original;
  {
    std::ifstream in(table, std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_GT(original.size(), 4096u);
  auto e = Engine::Create(m->model.get(), m->tokenizer.get(), EngineOptions{}, nullptr);
  ASSERT_TRUE(e.ok()) << e.status();

  fs::resize_file(table, 1024);  // every row now lies past the end of the file
  EngineRequest r = Request(6, 12, 8);
  r.prompt = std::vector<int32_t>(12, 0);
  for (size_t i = 0; i < r.prompt.size(); ++i) r.prompt[i] = static_cast<int32_t>(i * 37 % 200);
  auto c = Submit(**e, r);
  ASSERT_TRUE(c.ok());
  const RequestOutput failed = (*c)->Wait();
  EXPECT_EQ(failed.finish, FinishReason::kError);
  EXPECT_NE(std::string(failed.error.message()).find(table), std::string::npos) << failed.error;
  EXPECT_TRUE((*e)->WaitIdle(std::chrono::seconds(10)));
  EXPECT_EQ((*e)->Snapshot().used_blocks, 0);

  {  // restore in place: the store keeps its open descriptor
    std::fstream out(table, std::ios::in | std::ios::out | std::ios::binary);
    out.write(original.data(), static_cast<std::streamsize>(original.size()));
  }
  auto ok = Submit(**e, r);
  ASSERT_TRUE(ok.ok());
  const RequestOutput good = (*ok)->Wait();
  EXPECT_EQ(good.finish, FinishReason::kLength) << good.error;
  EXPECT_EQ(good.token_ids.size(), 8u);
}

// On a backend whose memory is a device's, the KV cache is sized from --gpu-memory-utilization
// and the device's free memory, and the engine serves the same tokens as on the host.
TEST(Engine, DeviceMemoryBackendSizesKvFromUtilizationAndServesTheSameTokens) {
  testing_util::SeparateMemoryBackend dev;
  auto m = LoadModelDir(testing_util::CreateTinyModel("engine-dev"), &dev);
  ASSERT_TRUE(m.ok()) << m.status();
  constexpr uint64_t kMiB = 1 << 20;
  dev.set_free_memory(900 * kMiB, 1024 * kMiB);  // 124 MiB already in use

  EngineOptions o;
  o.gpu_memory_utilization = 0.3;  // 307 MiB: too little for use + a step + the slack
  auto small = Engine::Create(m->model.get(), m->tokenizer.get(), o, nullptr);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("--gpu-memory-utilization 0.3"), std::string::npos)
      << small.status();

  o.gpu_memory_utilization = 0.5;  // 512 MiB
  auto e = Engine::Create(m->model.get(), m->tokenizer.get(), o, nullptr);
  ASSERT_TRUE(e.ok()) << e.status();
  const uint64_t kv = static_cast<uint64_t>((*e)->options().kv_blocks) *
                      KvCache::BytesPerBlock(m->model->config(), o.block_size);
  // 512 - 124 in use - 256 slack = 132 MiB, less this tiny model's step activations (< 32 MiB).
  EXPECT_LE(kv, 132 * kMiB);
  EXPECT_GE(kv, 100 * kMiB);

  // Sampled on the backend (Backend::Sample): greedy, temperature with top-k/top-p, a
  // repetition penalty; a request with logprobs takes the host path. Prompts longer than a
  // prefill chunk give steps in which nothing is sampled.
  auto host = MakeEngine();
  for (int salt : {1, 4, 5, 7}) {
    EngineRequest r = Request(salt, 5 + 9 * salt, 16);
    EXPECT_EQ(RunOne(**e, r).token_ids, RunOne(*host, r).token_ids) << "request " << salt;
  }
  EXPECT_GT(dev.samples(), 0);
  // A backend with its own memory gets step graphs by default: the decodes above replayed them.
  EXPECT_TRUE(m->model->step_graphs_on());
  EXPECT_GT(m->model->graph_stats().graph_steps, 0u);
  EXPECT_GT(dev.graph_launches(), 0);
  const int64_t samples = dev.samples();
  EngineRequest lp = Request(2, 11, 8);
  lp.params.logprobs = 2;
  EXPECT_EQ(RunOne(**e, lp).token_ids, RunOne(*host, lp).token_ids);
  EXPECT_EQ(dev.samples(), samples) << "logprobs need the host's logits";
  EngineRequest longp = Request(3, 700, 4);
  EXPECT_EQ(RunOne(**e, longp).token_ids, RunOne(*host, longp).token_ids);
  e->reset();
  host.reset();
  EXPECT_EQ(dev.violations(), 0);

  // An explicit --kv-cache-bytes wins over the utilization.
  o.kv_cache_bytes = 8 * kMiB;
  auto fixed = Engine::Create(m->model.get(), m->tokenizer.get(), o, nullptr);
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  // Less one: the cache's pad block (step graphs) comes out of the same bytes.
  EXPECT_EQ(
      (*fixed)->options().kv_blocks,
      static_cast<int>(8 * kMiB / KvCache::BytesPerBlock(m->model->config(), o.block_size)) - 1);
}

}  // namespace
}  // namespace engram
