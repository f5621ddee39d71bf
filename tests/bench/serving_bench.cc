// gRPC serving overhead benchmark (issue 4): the nano-vLLM offline workload (DESIGN §6: random
// prompt ids, lengths Uniform(a, b), output lengths Uniform(a, b), EOS ignored) run twice in one
// process on one loaded model, with the same closed loop of C concurrent requests:
//   offline  threads submit straight to the Engine and wait on their RequestHandle
//   grpc     the same threads call Generate on an in-process engramd service over loopback TCP,
//            each reading its stream with a blocking reader
// Only the transport differs, so grpc/offline is what the API costs. Prints figures; never
// passes or fails on them.
//
//   serving_bench --model DIR [--num-seqs 32] [--concurrency 32] [--prompt-len 100,1024]
//                 [--output-len 100,1024] [--rounds 1] [--threads 0]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <thread>

#include "engram/v1/inference.grpc.pb.h"
#include "server/api/inference_service.h"
#include "server/engine/engine.h"
#include "server/model/model_loader.h"
#include "tools/engram_model/flags.h"

namespace engram {
namespace {

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> output_lens;
  int64_t prompt_tokens = 0, output_tokens = 0;
};

Workload MakeWorkload(int n, std::vector<int64_t> p, std::vector<int64_t> o, int vocab) {
  Rng rng(1234);
  auto uniform = [&](int64_t a, int64_t b) {
    return a + static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(b - a + 1));
  };
  Workload w;
  for (int i = 0; i < n; ++i) {
    auto& pr = w.prompts.emplace_back(static_cast<size_t>(uniform(p[0], p[1])));
    for (auto& t : pr) t = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(vocab));
    w.output_lens.push_back(static_cast<int>(uniform(o[0], o[1])));
    w.prompt_tokens += static_cast<int64_t>(pr.size());
    w.output_tokens += w.output_lens.back();
  }
  return w;
}

EngineRequest MakeRequest(const Workload& w, size_t i) {
  EngineRequest r;
  r.id = "bench-" + std::to_string(i);
  r.prompt = w.prompts[i];
  r.params.sampling.temperature = 0;
  r.params.stopping.max_new_tokens = w.output_lens[i];
  r.params.stopping.ignore_eos = true;
  return r;
}

// Runs every request with `concurrency` workers; `one` runs request i and returns its tokens.
template <typename Fn>
double ClosedLoop(const Workload& w, int concurrency, Fn one, int64_t* tokens_out) {
  std::atomic<size_t> next{0};
  std::atomic<int64_t> tokens{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int c = 0; c < concurrency; ++c)
    workers.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < w.prompts.size();) tokens += one(i);
    });
  for (auto& t : workers) t.join();
  *tokens_out = tokens.load();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t RunOffline(Engine& engine, const Workload& w, size_t i) {
  std::mutex mu;
  std::condition_variable cv;
  auto h = engine.Submit(MakeRequest(w, i), [&] {
    std::lock_guard<std::mutex> l(mu);
    cv.notify_all();
  });
  if (!h.ok()) {
    std::fprintf(stderr, "offline: %s\n", std::string(h.status().message()).c_str());
    return 0;
  }
  int64_t n = 0;
  RequestOutput o;
  std::unique_lock<std::mutex> l(mu);
  for (;;) {
    bool done = false;
    while ((*h)->Take(&o)) {
      n += static_cast<int64_t>(o.token_ids.size());
      done |= o.finished();
    }
    if (done) return n;
    cv.wait_for(l, std::chrono::milliseconds(50));
  }
}

int64_t RunGrpc(v1::InferenceService::Stub& stub, const Workload& w, size_t i) {
  v1::GenerateRequest req;
  auto* ids = req.mutable_prompt_token_ids();
  for (int32_t t : w.prompts[i]) ids->add_ids(static_cast<uint32_t>(t));
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stopping()->set_max_new_tokens(static_cast<uint32_t>(w.output_lens[i]));
  req.mutable_stopping()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse resp;
  int64_t n = 0;
  while (reader->Read(&resp)) n += resp.token_ids_size();
  if (grpc::Status s = reader->Finish(); !s.ok())
    std::fprintf(stderr, "grpc: %d %s\n", static_cast<int>(s.error_code()),
                 s.error_message().c_str());
  return n;
}

int Main(int argc, char** argv) {
  std::string model_dir;
  int64_t num_seqs = 32, concurrency = 32, rounds = 1, threads = 0;
  std::vector<int64_t> prompt_len = {100, 1024}, output_len = {100, 1024};
  tool::FlagParser p("serving_bench", "serving_bench --model DIR [flags]",
                     "Offline engine vs the same engine behind gRPC, same workload and process.");
  p.set_program("");
  p.AddString("model", &model_dir, "model directory");
  p.AddInt("num-seqs", &num_seqs, "requests in the workload (default 32)", 1, 1 << 20);
  p.AddInt("concurrency", &concurrency, "requests in flight (default 32)", 1, 4096);
  p.AddIntList("prompt-len", &prompt_len, "prompt length range a,b (default 100,1024)", 1);
  p.AddIntList("output-len", &output_len, "output length range a,b (default 100,1024)", 1);
  p.AddInt("rounds", &rounds, "alternating offline/grpc rounds (default 1)", 1, 100);
  p.AddInt("threads", &threads, "CPU threads (default: one per core)", 0, 1024);
  if (int rc = tool::ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (model_dir.empty() || prompt_len.size() != 2 || output_len.size() != 2 ||
      prompt_len[0] > prompt_len[1] || output_len[0] > output_len[1]) {
    std::fprintf(stderr, "serving_bench: --model is required; ranges are a,b with a <= b\n");
    return 2;
  }
  BackendChoice backend = CreateBackend(static_cast<int>(threads));
  EngramMemoryOptions mem;
  mem.store.tier = TableTier::kRam;
  auto loaded = LoadModelDir(model_dir, backend.backend.get(), mem);
  if (!loaded.ok()) {
    std::fprintf(stderr, "serving_bench: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  const Workload w = MakeWorkload(static_cast<int>(num_seqs), prompt_len, output_len,
                                  loaded->model->config().vocab_size);
  EngineOptions eo;
  eo.max_num_seqs = static_cast<int>(std::max<int64_t>(concurrency, 1));
  eo.max_num_batched_tokens = std::max(512, eo.max_num_seqs);
  auto engine = Engine::Create(loaded->model.get(), loaded->tokenizer.get(), eo, nullptr);
  if (!engine.ok()) {
    std::fprintf(stderr, "serving_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  auto chat = LoadChatTemplate(model_dir);
  if (!chat.ok()) return 1;
  api::InferenceService service(api::ServiceOptions{}, nullptr);
  api::ServingModel serving;
  serving.loaded = &*loaded;
  serving.engine = engine->get();
  serving.chat.emplace(std::move(*chat));
  service.SetReady(&serving);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "serving_bench: cannot start the gRPC server on loopback\n");
    return 1;
  }
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = v1::InferenceService::NewStub(channel);

  std::fprintf(stderr,
               "serving_bench: %s; %lld requests, %lld prompt + %lld output tokens, "
               "concurrency %lld\n",
               backend.reason.c_str(), static_cast<long long>(num_seqs),
               static_cast<long long>(w.prompt_tokens), static_cast<long long>(w.output_tokens),
               static_cast<long long>(concurrency));
  std::printf("%-6s %-8s %9s %11s %12s %10s\n", "round", "mode", "seconds", "out tok/s",
              "total tok/s", "grpc/off");
  std::vector<double> ratios;
  for (int r = 0; r < rounds; ++r) {
    int64_t tok_off = 0, tok_grpc = 0;
    const double off = ClosedLoop(
        w, static_cast<int>(concurrency), [&](size_t i) { return RunOffline(**engine, w, i); },
        &tok_off);
    const double grpc_s = ClosedLoop(
        w, static_cast<int>(concurrency), [&](size_t i) { return RunGrpc(*stub, w, i); },
        &tok_grpc);
    if (tok_off != w.output_tokens || tok_grpc != w.output_tokens)
      std::fprintf(stderr,
                   "serving_bench: token count mismatch: offline %lld, grpc %lld, want %lld\n",
                   static_cast<long long>(tok_off), static_cast<long long>(tok_grpc),
                   static_cast<long long>(w.output_tokens));
    const double all = static_cast<double>(w.prompt_tokens + w.output_tokens);
    const double out = static_cast<double>(w.output_tokens);
    ratios.push_back(off / grpc_s);
    std::printf("%-6d %-8s %9.2f %11.1f %12.1f %10s\n", r, "offline", off, out / off, all / off,
                "");
    std::printf("%-6d %-8s %9.2f %11.1f %12.1f %10.4f\n", r, "grpc", grpc_s, out / grpc_s,
                all / grpc_s, ratios.back());
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("median grpc/offline throughput ratio over %zu rounds: %.4f\n", ratios.size(),
              ratios[ratios.size() / 2]);
  server->Shutdown();
  return 0;
}

}  // namespace
}  // namespace engram

int main(int argc, char** argv) { return engram::Main(argc, argv); }
