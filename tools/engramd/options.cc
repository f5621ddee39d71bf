#include "tools/engramd/options.h"

#include <cstdio>

#include "tools/engram_model/flags.h"

namespace engram::engramd {

int ParseOptions(int argc, char** argv, Options* o) {
  tool::FlagParser p(
      "engramd", "engramd (--model DIR | --demo) [flags]",
      "Serves engram.v1.InferenceService (gRPC, token streaming) with continuous batching, and\n"
      "Prometheus metrics on --metrics-port. SIGTERM drains: health goes NOT_SERVING, new calls\n"
      "get UNAVAILABLE, running streams finish for up to --drain-timeout seconds.");
  int64_t metrics_port = o->metrics_port, threads = 0, kv_mb = 1024, block = 16, seqs = 64,
          batched = 512, queued = 256, max_len = 0, cache_mb = 256, max_input = 1 << 20;
  double drain = o->drain_timeout_s;
  std::string tier = "ram", prefetch = "on", policy = "lfu";
  bool huge = true, mlock = false, log_requests = true;
  p.AddString("model", &o->model_dir,
              "model directory (engram-model create, docs/model-format.md)");
  p.AddBool("demo", &o->demo,
            "serve the built-in demo model, creating it on first start in $ENGRAM_CACHE_DIR or "
            "~/.cache/engram-serve");
  p.AddString("model-name", &o->model_name,
              "name in metrics and ModelInfo (default: directory name)");
  p.AddString("listen", &o->listen, "gRPC address host:port (default 127.0.0.1:50051)");
  p.AddInt("metrics-port", &metrics_port,
           "Prometheus /metrics port on the --listen host (default 9400, 0 = off)", 0, 65535);
  p.AddInt("threads", &threads, "CPU compute threads (default: one per core)", 0, 1024);
  p.AddInt("kv-cache-mb", &kv_mb, "KV cache size in MiB (default 1024)", 1, 1 << 24);
  p.AddInt("kv-block-size", &block, "tokens per KV block (default 16)", 1, 1024);
  p.AddInt("max-num-seqs", &seqs, "sequences per step (default 64)", 1, 4096);
  p.AddInt("max-num-batched-tokens", &batched,
           "tokens per step, decodes plus prefill chunks (default 512)", 1, 1 << 20);
  p.AddInt("max-queued-requests", &queued,
           "waiting requests beyond which Generate fails with RESOURCE_EXHAUSTED (default 256)", 0,
           1 << 20);
  p.AddInt("max-model-len", &max_len, "context length (default: the model's)", 0, 1 << 24);
  p.AddInt("max-input-bytes", &max_input, "largest prompt or message content (default 1 MiB)", 1,
           1 << 30);
  p.AddString("engram-tier", &tier, "where Engram tables live (default ram)",
              {"ram", "ssd", "mmap"});
  p.AddInt("engram-cache-mb", &cache_mb, "ssd tier: RAM row cache in MiB (default 256)", 0,
           1 << 24);
  p.AddString("engram-cache-policy", &policy, "row cache policy (default lfu)", {"lfu", "lru"});
  p.AddString("engram-prefetch", &prefetch,
              "on: rows gathered by the prefetch thread while earlier layers run; off: looked up "
              "inside each Engram layer (default on)",
              {"on", "off"});
  p.AddBool("engram-huge-pages", &huge,
            "ram tier: back tables with transparent huge pages (default true)");
  p.AddBool("engram-mlock", &mlock, "ram tier: lock tables in memory");
  p.AddDouble("drain-timeout", &drain,
              "seconds running streams get to finish after SIGTERM (default 30)");
  p.AddString("tls-cert", &o->tls_cert, "PEM certificate chain: serve TLS (with --tls-key)");
  p.AddString("tls-key", &o->tls_key, "PEM private key for --tls-cert");
  p.AddString("api-key-file", &o->api_key_file,
              "file holding the API key; calls must send 'authorization: Bearer <key>'");
  p.AddBool("log-requests", &log_requests, "one stderr line per finished request (default true)");
  if (int rc = tool::ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc == 0 ? 0 : 2;
  auto usage = [](const char* msg) {
    std::fprintf(stderr, "engramd: %s\n", msg);
    return 2;
  };
  if (o->demo == !o->model_dir.empty()) return usage("give exactly one of --model DIR or --demo");
  if (o->tls_cert.empty() != o->tls_key.empty())
    return usage("--tls-cert and --tls-key go together");
  o->metrics_port = static_cast<int>(metrics_port);
  o->threads = static_cast<int>(threads);
  o->engine.kv_cache_bytes = static_cast<uint64_t>(kv_mb) << 20;
  o->engine.block_size = static_cast<int>(block);
  o->engine.max_num_seqs = static_cast<int>(seqs);
  o->engine.max_num_batched_tokens = static_cast<int>(batched);
  o->engine.max_queued_requests = static_cast<int>(queued);
  o->engine.max_model_len = max_len;
  o->engine.log_requests = log_requests;
  o->memory.store.tier = tier == "ram"   ? TableTier::kRam
                         : tier == "ssd" ? TableTier::kSsd
                                         : TableTier::kMmap;
  o->memory.store.cache_bytes = static_cast<uint64_t>(cache_mb) << 20;
  o->memory.store.cache_policy = policy == "lru" ? CachePolicy::kLru : CachePolicy::kLfu;
  o->memory.store.huge_pages = huge;
  o->memory.store.mlock = mlock;
  o->memory.store.progress = true;
  o->memory.prefetch = prefetch == "on";
  o->drain_timeout_s = drain;
  o->max_input_bytes = static_cast<size_t>(max_input);
  return -1;
}

}  // namespace engram::engramd
