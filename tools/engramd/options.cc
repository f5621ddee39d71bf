#include "tools/engramd/options.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>

#include "absl/strings/str_split.h"
#include "server/util/str_cat.h"

#include "tools/engram_model/flags.h"

namespace engram::engramd {
namespace {

// "1073741824", "512M", "1G", "1GiB", "4k": binary multiples.
std::optional<uint64_t> ParseBytes(std::string_view v) {
  size_t i = 0;
  uint64_t n = 0;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
    if (n > (UINT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(v[i++] - '0');
  }
  if (i == 0) return std::nullopt;
  std::string unit(v.substr(i));
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int shift = 0;
  if (unit.empty() || unit == "b")
    shift = 0;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    shift = 10;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    shift = 20;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    shift = 30;
  else if (unit == "t" || unit == "tb" || unit == "tib")
    shift = 40;
  else
    return std::nullopt;
  if (shift > 0 && n > (UINT64_MAX >> shift)) return std::nullopt;
  return n << shift;
}

// A default value with optional per-table overrides: "ssd" or "ram,3=ssd,7=ssd,shared=ssd".
// Calls set(layer, value) with layer -1 for the default and kSharedTable for "shared" (the
// values table every product-key memory layer shares).
constexpr int kSharedTable = -2;
absl::Status ParseLayerSpec(std::string_view flag, std::string_view spec,
                            const std::function<bool(int, std::string_view)>& set,
                            std::string_view allowed);
absl::Status ParseLayerSpec(std::string_view flag, std::string_view spec,
                            const std::function<bool(int, std::string_view)>& set,
                            std::string_view allowed) {
  for (absl::string_view item : absl::StrSplit(absl::string_view(spec.data(), spec.size()), ',')) {
    int layer = -1;
    std::string_view value(item.data(), item.size());
    if (const size_t eq = value.find('='); eq != std::string_view::npos) {
      const std::string l(value.substr(0, eq));
      char* end = nullptr;
      const long x = std::strtol(l.c_str(), &end, 10);
      if (l == "shared") {
        layer = kSharedTable;
      } else if (l.empty() || *end != '\0' || x < 0 || x > 100000) {
        return absl::InvalidArgumentError(
            StrCat("--", flag, ": '", l, "' is not a layer number or 'shared' (LAYER=VALUE)"));
      } else {
        layer = static_cast<int>(x);
      }
      value = value.substr(eq + 1);
    }
    if (!set(layer, value))
      return absl::InvalidArgumentError(StrCat("--", flag, ": '", value, "' is not ", allowed,
                                               " (give VALUE or VALUE,LAYER=VALUE,...)"));
  }
  return absl::OkStatus();
}

std::optional<TableTier> ParseTier(std::string_view v) {
  if (v == "ram") return TableTier::kRam;
  if (v == "ssd") return TableTier::kSsd;
  if (v == "mmap") return TableTier::kMmap;
  return std::nullopt;
}

}  // namespace

int ParseOptions(int argc, char** argv, Options* o) {
  tool::FlagParser p(
      "engramd", "engramd (--model DIR | --demo) [flags]",
      "Serves engram.v1.InferenceService (gRPC, token streaming) with continuous batching, and\n"
      "Prometheus metrics on --metrics-port. SIGTERM drains: health goes NOT_SERVING, new calls\n"
      "get UNAVAILABLE, running streams finish for up to --drain-timeout seconds.");
  p.set_program("");
  int64_t metrics_port = o->metrics_port, threads = 0, block = 16, seqs = 64, batched = 512,
          queued = 256, max_len = 0, max_input = 1 << 20, graph_batch = 0;
  double drain = o->drain_timeout_s;
  std::string device_path = "auto", device_cache = "0";
  std::string backend = "auto", tier = "ram", cache_bytes = "256M", kv_bytes, prefetch = "on",
              policy = "lfu";
  bool huge = true, mlock = false, log_requests = true, eager = false;
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
  p.AddString("backend", &backend,
              "compute backend: auto (CUDA when a GPU and cuBLASLt are there, else the CPU), cpu "
              "or cuda (default auto)",
              {"auto", "cpu", "cuda"});
  p.AddString("kv-cache-bytes", &kv_bytes,
              "KV cache size, e.g. 1G or 512M, or auto (the default: 1G on the CPU; on a GPU "
              "what --gpu-memory-utilization leaves)");
  p.AddDouble("gpu-memory-utilization", &o->engine.gpu_memory_utilization,
              "CUDA backend: fraction of the GPU's memory engramd may use, weights, activations "
              "and KV cache together (default 0.9)");
  p.AddBool("enforce-eager", &eager,
            "GPU: run every step op by op instead of replaying decode steps as CUDA graphs");
  p.AddInt("max-graph-batch-size", &graph_batch,
           "GPU: decode steps of up to this many sequences replay CUDA graphs (default: "
           "--max-num-seqs)",
           0, 4096);
  p.AddInt("kv-block-size", &block, "tokens per KV block (default 16)", 1, 1024);
  p.AddInt("max-num-seqs", &seqs, "sequences per step (default 64)", 1, 4096);
  p.AddInt("max-num-batched-tokens", &batched,
           "tokens per step, decodes plus prefill chunks (default 512)", 1, 1 << 20);
  p.AddInt("max-queued-requests", &queued,
           "requests waiting to start (arrived, not yet scheduled) beyond which Generate fails "
           "with RESOURCE_EXHAUSTED (default 256)",
           1, 1 << 20);
  p.AddInt("max-model-len", &max_len, "context length (default: the model's)", 0, 1 << 24);
  p.AddInt("max-input-bytes", &max_input, "largest prompt or message content (default 1 MiB)", 1,
           1 << 30);
  p.AddString("memory-tier", &tier,
              "where memory tables (Engram and product-key values) live: ram, ssd or mmap, for "
              "all tables or per table by layer or 'shared' (the product-key values every layer "
              "shares), e.g. ram,12=ssd,shared=ssd (default ram)");
  p.AddString("memory-cache-bytes", &cache_bytes,
              "ssd tier: RAM row cache per table, e.g. 256M, or per table: 256M,12=2G,shared=1G "
              "(default 256M)");
  p.AddString("engram-tier", &tier, "the older name of --memory-tier");
  p.AddString("engram-cache-bytes", &cache_bytes, "the older name of --memory-cache-bytes");
  p.AddString("engram-cache-policy", &policy, "row cache policy (default lfu)", {"lfu", "lru"});
  p.AddString("engram-prefetch", &prefetch,
              "on: rows gathered by the prefetch thread while earlier layers run; off: looked up "
              "inside each Engram layer (default on)",
              {"on", "off"});
  p.AddString("engram-device-path", &device_path,
              "how Engram rows reach a GPU: zero-copy (the GPU reads the pinned RAM table, behind "
              "its hot-row cache when --engram-device-cache-bytes is set), staged (the CPU "
              "gathers the distinct rows, one copy per layer on a copy stream), floats (the CPU "
              "also dequantises); auto: zero-copy for ram tables, staged for the others "
              "(default auto)",
              {"auto", "zero-copy", "staged", "floats"});
  p.AddString("engram-device-cache-bytes", &device_cache,
              "zero-copy path: hot-row cache in GPU memory per table, e.g. 1G (default 0: none)");
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
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "engramd: %s\n", msg.c_str());
    return 2;
  };
  if (o->demo == !o->model_dir.empty()) return usage("give exactly one of --model DIR or --demo");
  if (o->tls_cert.empty() != o->tls_key.empty())
    return usage("--tls-cert and --tls-key go together");
  o->metrics_port = static_cast<int>(metrics_port);
  o->threads = static_cast<int>(threads);
  ParseBackendKind(backend, &o->backend);  // the flag parser allowed only these three
  if (!kv_bytes.empty() && kv_bytes != "auto") {
    const std::optional<uint64_t> kv = ParseBytes(kv_bytes);
    if (!kv || *kv == 0)
      return usage(StrCat("--kv-cache-bytes: '", kv_bytes,
                          "' is not a size (bytes, or with K, M, G, T: e.g. 1G) or auto"));
    o->engine.kv_cache_bytes = *kv;
  }
  if (!(o->engine.gpu_memory_utilization > 0 && o->engine.gpu_memory_utilization <= 1))
    return usage(StrCat("--gpu-memory-utilization: ", o->engine.gpu_memory_utilization,
                        " is outside (0, 1]"));
  o->engine.block_size = static_cast<int>(block);
  o->engine.max_num_seqs = static_cast<int>(seqs);
  o->engine.max_num_batched_tokens = static_cast<int>(batched);
  o->engine.max_queued_requests = static_cast<int>(queued);
  o->engine.max_model_len = max_len;
  o->engine.log_requests = log_requests;
  o->engine.graphs.mode = eager ? StepGraphOptions::Mode::kOff : StepGraphOptions::Mode::kAuto;
  o->engine.graphs.max_batch = static_cast<int>(graph_batch);
  o->memory.store.cache_policy = policy == "lru" ? CachePolicy::kLru : CachePolicy::kLfu;
  o->memory.store.huge_pages = huge;
  o->memory.store.mlock = mlock;
  o->memory.store.progress = true;
  o->memory.store.cache_bytes = 256ull << 20;
  // Per-layer entries start from the defaults, whichever flag names them first.
  auto layer_opts = [&](int layer) -> TableStoreOptions& {
    if (layer == kSharedTable) {
      auto [it, fresh] = o->memory.product_key.per_table.try_emplace(ProductKeyConfig::kSharedKey,
                                                                     o->memory.store);
      return it->second;
    }
    if (layer < 0) return o->memory.store;
    auto [it, fresh] = o->memory.per_layer.try_emplace(layer, o->memory.store);
    return it->second;
  };
  std::map<int, TableTier> tiers;
  std::map<int, uint64_t> caches;
  absl::Status st = ParseLayerSpec(
      "memory-tier", tier,
      [&](int layer, std::string_view v) {
        auto t = ParseTier(v);
        if (t) tiers[layer] = *t;
        return t.has_value();
      },
      "one of ram, ssd, mmap");
  if (st.ok())
    st = ParseLayerSpec(
        "memory-cache-bytes", cache_bytes,
        [&](int layer, std::string_view v) {
          auto b = ParseBytes(v);
          if (b) caches[layer] = *b;
          return b.has_value();
        },
        "a size (bytes, or with K, M, G, T: e.g. 256M)");
  if (!st.ok()) return usage(std::string(st.message()));
  // Defaults first, so layers named later inherit them.
  if (tiers.count(-1)) o->memory.store.tier = tiers[-1];
  if (caches.count(-1)) o->memory.store.cache_bytes = caches[-1];
  for (auto [layer, t] : tiers)
    if (layer != -1) layer_opts(layer).tier = t;
  for (auto [layer, b] : caches)
    if (layer != -1) layer_opts(layer).cache_bytes = b;
  o->memory.prefetch = prefetch == "on";
  if (device_path == "zero-copy") o->memory.row_path = EngramRowPath::kIds;
  if (device_path == "staged") o->memory.row_path = EngramRowPath::kPacked;
  if (device_path == "floats") o->memory.row_path = EngramRowPath::kEmbeddings;
  const std::optional<uint64_t> dev_cache = ParseBytes(device_cache);
  if (!dev_cache)
    return usage(StrCat("--engram-device-cache-bytes: '", device_cache,
                        "' is not a size (bytes, or with K, M, G, T: e.g. 1G)"));
  o->memory.device_cache_bytes = *dev_cache;
  o->drain_timeout_s = drain;
  o->max_input_bytes = static_cast<size_t>(max_input);
  return -1;
}

}  // namespace engram::engramd
