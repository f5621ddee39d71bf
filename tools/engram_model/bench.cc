// engram-model bench: the offline serving benchmark of the memory-tier issue, following the
// nano-vLLM harness the Engram paper used (DESIGN §6): N sequences of random token ids with
// prompt and output lengths drawn Uniform(a, b), EOS ignored, continuous batching with chunked
// prefill; throughput = output tokens / wall time. One process runs every configuration on the
// same workload so the ratios compare like with like:
//   dense     the backbone with every Engram module skipped (the paper's baseline)
//   ram       Engram, table copied into RAM, prefetch on
//   ram-sync  the same with prefetch off (rows looked up inside the layer)
//   ssd       Engram, table read from the file with pread behind a RAM row cache, prefetch on
//   ssd-direct  the same with O_DIRECT reads, bypassing the page cache
// and the device paths of Engram rows (DESIGN §3; on the CPU backend they run the same steps on
// host memory), all with the table in RAM and prefetch on:
//   ram-staged     the prefetch thread gathers the packed distinct rows, one upload per layer
//                  (pinned staging, copy stream), the backend dequantises
//   ram-zero-copy  the backend reads the rows from the pinned table itself (the gather kernel)
//   ram-cached     the same behind the backend's hot-row cache (--device-cache-mb)
// Decode steps replay step graphs (CUDA graphs) on a GPU; any configuration with "-eager"
// appended (dense-eager, ram-eager, ...) runs the same op by op, for the side-by-side ratio.
// It prints figures; it never passes or fails on them.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_split.h"
#include "server/engine/sampler.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/tool_model.h"

namespace engram::tool {
namespace {

struct Workload {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> output_lens;
  int64_t prompt_tokens = 0, output_tokens = 0;
};

Workload MakeWorkload(int n, int64_t p0, int64_t p1, int64_t o0, int64_t o1, int vocab,
                      uint64_t seed) {
  Rng rng(seed);
  auto uniform = [&](int64_t a, int64_t b) {
    return a + static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(b - a + 1));
  };
  Workload w;
  for (int i = 0; i < n; ++i) {
    auto& p = w.prompts.emplace_back(static_cast<size_t>(uniform(p0, p1)));
    for (auto& t : p) t = static_cast<int32_t>(rng.Next() % static_cast<uint64_t>(vocab));
    w.output_lens.push_back(static_cast<int>(uniform(o0, o1)));
    w.prompt_tokens += static_cast<int64_t>(p.size());
    w.output_tokens += w.output_lens.back();
  }
  return w;
}

struct Result {
  double seconds = 0;
  int64_t steps = 0;
  double stall_ms_per_step = 0, prefetch_ms_per_step = 0, unique_ratio = 0, hit_rate = -1;
  uint64_t rows_ram = 0, rows_ssd = 0, rows_cache = 0;
  uint64_t device_lookups = 0, device_hits = 0, device_transferred = 0;  // BackendTableStats
  double load_seconds = 0;
  uint64_t graph_steps = 0;  // steps replayed from step graphs
  // Product-key layers: host fetch and stall per step, distinct rows per reference fetched,
  // and the values tables' row-cache hit rate (-1: no cache in use).
  bool pkm = false;
  double pkm_fetch_ms_per_step = 0, pkm_stall_ms_per_step = 0, pkm_unique_ratio = 0;
  double pkm_hit_rate = -1;
  std::string pkm_path;
};

// Runs the workload to completion: every step takes all decoding sequences plus prefill chunks
// up to `chunk_budget` prompt tokens (vLLM's chunked prefill), greedy sampling.
absl::StatusOr<Result> RunWorkload(Model& model, const Workload& w, int chunk_budget) {
  const int n = static_cast<int>(w.prompts.size());
  constexpr int kBlock = 16;
  int64_t blocks = 0;
  for (int i = 0; i < n; ++i)
    blocks += (static_cast<int64_t>(w.prompts[i].size()) + w.output_lens[i] + kBlock - 1) / kBlock;
  KvCache kv(model.config(), static_cast<int>(blocks), kBlock, model.backend());
  std::vector<SequenceState> st(n);
  std::vector<size_t> prefilled(n, 0);
  std::vector<int> generated(n, 0);
  std::vector<int32_t> last(n, 0);
  for (int i = 0; i < n; ++i) {
    model.ResetState(st[i]);
    if (auto s = kv.Reserve(st[i], static_cast<int64_t>(w.prompts[i].size()) + w.output_lens[i]);
        !s.ok())
      return s;
  }
  const int V = model.config().vocab_size;
  // Buffers at their largest step (every decode plus a full chunk) before the clock starts, as
  // the engine does, so that recorded graphs keep their addresses.
  model.ReserveStep(static_cast<int64_t>(chunk_budget) + n, n);
  Result r;
  ForwardOutput out;
  std::vector<StepEntry> step;
  std::vector<int> who;
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    step.clear();
    who.clear();
    int budget = chunk_budget;
    for (int i = 0; i < n; ++i) {
      if (generated[i] >= w.output_lens[i]) continue;
      if (prefilled[i] < w.prompts[i].size()) {
        if (budget <= 0) continue;
        const size_t len =
            std::min<size_t>(static_cast<size_t>(budget), w.prompts[i].size() - prefilled[i]);
        step.push_back(
            {&st[i], std::span<const int32_t>(w.prompts[i].data() + prefilled[i], len), false});
        prefilled[i] += len;
        budget -= static_cast<int>(len);
      } else {
        step.push_back({&st[i], std::span<const int32_t>(&last[i], 1), false});
      }
      who.push_back(i);
    }
    if (step.empty()) break;
    if (auto s = model.Forward(step, kv, &out); !s.ok()) return s;
    ++r.steps;
    for (size_t k = 0; k < who.size(); ++k) {
      const int i = who[k];
      if (prefilled[i] < w.prompts[i].size()) continue;  // mid-prompt chunk: no token yet
      const float* row = out.logits.data() + static_cast<int64_t>(out.first_row[k]) * V;
      last[i] = static_cast<int32_t>(std::max_element(row, row + V) - row);
      ++generated[i];
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& s : st) kv.Release(s);
  return r;
}

void FillMemoryStats(const Model& model, Result& r) {
  const PrefetchStats& p = model.prefetcher().stats();
  const double steps = std::max<double>(1, static_cast<double>(p.steps.load()));
  r.stall_ms_per_step = static_cast<double>(p.stall_ns.load()) / 1e6 / steps;
  r.prefetch_ms_per_step = static_cast<double>(p.prefetch_ns.load()) / 1e6 / steps;
  r.unique_ratio = p.lookups.load() ? static_cast<double>(p.unique_rows.load()) /
                                          static_cast<double>(p.lookups.load())
                                    : 0;
  uint64_t req = 0, hit = 0;
  for (int s = 0; s < model.prefetcher().num_slots(); ++s) {
    const TableStoreStats& t = model.prefetcher().store(s).stats();
    req += t.rows_requested.load();
    hit += t.rows_from_cache.load();
    r.rows_ram += t.rows_from_ram.load();
    r.rows_ssd += t.rows_from_ssd.load();
    r.rows_cache += t.rows_from_cache.load();
  }
  if (r.rows_ssd + r.rows_cache > 0 && req > 0)
    r.hit_rate = static_cast<double>(hit) / static_cast<double>(req);
  const ProductKeyMemory* pm = model.product_key();
  if (pm == nullptr) return;
  r.pkm = true;
  const ProductKeyStats& ps = pm->stats();
  const double steps_run = std::max<double>(1, static_cast<double>(r.steps));
  r.pkm_fetch_ms_per_step = static_cast<double>(ps.fetch_ns.load()) / 1e6 / steps_run;
  r.pkm_stall_ms_per_step = static_cast<double>(ps.stall_ns.load()) / 1e6 / steps_run;
  r.pkm_unique_ratio = ps.lookups.load() ? static_cast<double>(ps.unique_rows.load()) /
                                               static_cast<double>(ps.lookups.load())
                                         : 0;
  uint64_t preq = 0, phit = 0, pssd = 0;
  for (size_t i = 0; i < pm->table_keys().size(); ++i) {
    const TableStoreStats& t = pm->store(i).stats();
    preq += t.rows_requested.load();
    phit += t.rows_from_cache.load();
    pssd += t.rows_from_ssd.load();
  }
  if (phit + pssd > 0 && preq > 0)
    r.pkm_hit_rate = static_cast<double>(phit) / static_cast<double>(preq);
  static constexpr const char* kPaths[] = {"direct", "staged", "ids"};
  r.pkm_path = kPaths[static_cast<int>(pm->path_of(0))];
}

}  // namespace

int RunBench(int argc, char** argv) {
  std::string model_dir, dense_dir, configs = "dense,ram,ram-sync,ssd";
  int64_t num_seqs = 8, threads = 0, seed = 0, chunk = 512, cache_mb = 256, device_cache_mb = 1024;
  std::vector<int64_t> prompt_len = {100, 1024}, output_len = {100, 1024};
  FlagParser p(
      "bench",
      "bench --model DIR [--num-seqs N] [--prompt-len a,b] [--output-len a,b] [--configs LIST]",
      "Offline throughput on the nano-vLLM workload (random prompts, EOS ignored), each "
      "configuration\n"
      "on the same workload in this one process: dense (Engram skipped), ram, ram-sync (prefetch\n"
      "off), ssd (pread + RAM row cache). Prints output tok/s, total tok/s, ratio to dense, mean\n"
      "stall and prefetch time per step, unique-row ratio and cache hit rate.");
  p.AddString("model", &model_dir, "model directory (engram-model create --preset bench)");
  p.AddString("dense-model", &dense_dir,
              "the 'dense' configuration runs this directory instead: the dense twin of a "
              "product-key model (create --memory none with the same preset and seed: the same "
              "backbone with MLPs where the memories are)");
  p.AddInt("num-seqs", &num_seqs, "sequences in the workload (default 8)", 1, 1 << 20);
  p.AddIntList("prompt-len", &prompt_len, "prompt length range a,b (default 100,1024)", 1);
  p.AddIntList("output-len", &output_len, "output length range a,b (default 100,1024)", 1);
  p.AddString("configs", &configs,
              "comma-separated subset of dense,ram,ram-sync,ssd,ssd-direct (O_DIRECT),mmap,"
              "ram-staged,ram-zero-copy,ram-cached");
  p.AddInt("cache-mb", &cache_mb, "ssd: RAM row cache size in MiB (default 256)", 0, 1 << 30);
  p.AddInt("device-cache-mb", &device_cache_mb,
           "ram-cached: the backend's hot-row cache per table in MiB (default 1024)", 0, 1 << 30);
  p.AddInt("chunk", &chunk, "prefill tokens per step (default 512)", 1, 1 << 20);
  p.AddInt("seed", &seed, "workload seed (default 0)", 0, INT64_MAX);
  p.AddInt("threads", &threads, "CPU threads (default: one per core)", 0, 1024);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (!p.IsSet("model")) return Fail("bench", absl::InvalidArgumentError("--model is required"));
  if (prompt_len.size() != 2 || output_len.size() != 2 || prompt_len[0] > prompt_len[1] ||
      output_len[0] > output_len[1])
    return Fail("bench",
                absl::InvalidArgumentError("--prompt-len and --output-len take a,b with a <= b"));

  BackendChoice backend = CreateBackend(static_cast<int>(threads));
  std::fprintf(stderr, "engram-model bench: %s\n", backend.reason.c_str());
  if (backend.backend == nullptr)
    return Fail("bench", absl::FailedPreconditionError(backend.reason));
  std::vector<std::string> names = absl::StrSplit(configs, ',');
  std::vector<std::pair<std::string, Result>> results;
  Workload w;
  for (const std::string& full_name : names) {
    // "-eager": the configuration without step graphs.
    const bool eager = full_name.size() > 6 && full_name.ends_with("-eager");
    const std::string name = eager ? full_name.substr(0, full_name.size() - 6) : full_name;
    EngramMemoryOptions mem;
    mem.store.progress = true;
    if (name == "dense") {
      mem.enabled = false;
    } else if (name == "ram" || name == "ram-sync") {
      mem.store.tier = TableTier::kRam;
      mem.store.huge_pages = true;  // 1.3-1.7x faster gathers in gather_bench
      mem.prefetch = name == "ram";
    } else if (name == "ssd" || name == "ssd-direct") {
      mem.store.tier = TableTier::kSsd;
      mem.store.cache_bytes = static_cast<uint64_t>(cache_mb) << 20;
      // O_DIRECT: every cache miss goes to the device, as with a table far beyond the page cache.
      mem.store.direct_io = name == "ssd-direct";
    } else if (name == "mmap") {
      mem.store.tier = TableTier::kMmap;
    } else if (name == "ram-staged" || name == "ram-zero-copy" || name == "ram-cached") {
      mem.store.tier = TableTier::kRam;
      mem.store.huge_pages = true;
      mem.row_path = name == "ram-staged" ? EngramRowPath::kPacked : EngramRowPath::kIds;
      if (name == "ram-cached")
        mem.device_cache_bytes = static_cast<uint64_t>(device_cache_mb) << 20;
    } else {
      return Fail("bench", absl::InvalidArgumentError(
                               "--configs: unknown configuration '" + full_name +
                               "' (allowed: dense, ram, ram-sync, ssd, ssd-direct, mmap, "
                               "ram-staged, ram-zero-copy, ram-cached, each optionally with "
                               "-eager)"));
    }
    const auto l0 = std::chrono::steady_clock::now();
    auto loaded = LoadModelDir(name == "dense" && !dense_dir.empty() ? dense_dir : model_dir,
                               backend.backend.get(), mem);
    if (!loaded.ok()) return Fail("bench", loaded.status());
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - l0).count();
    Model& model = *loaded->model;
    const StepGraphOptions graphs{
        eager ? StepGraphOptions::Mode::kOff : StepGraphOptions::Mode::kAuto,
        static_cast<int>(std::min<int64_t>(num_seqs, 256))};
    if (auto s = model.ConfigureStepGraphs(graphs); !s.ok()) return Fail("bench", s);
    if (w.prompts.empty()) {
      w = MakeWorkload(static_cast<int>(num_seqs), prompt_len[0], prompt_len[1], output_len[0],
                       output_len[1], model.config().vocab_size, static_cast<uint64_t>(seed));
      std::fprintf(stderr, "workload: %lld sequences, %lld prompt tokens, %lld output tokens\n",
                   static_cast<long long>(num_seqs), static_cast<long long>(w.prompt_tokens),
                   static_cast<long long>(w.output_tokens));
    }
    std::fprintf(stderr, "running %s ...\n", full_name.c_str());
    auto r = RunWorkload(model, w, static_cast<int>(chunk));
    if (!r.ok()) return Fail("bench", r.status());
    r->load_seconds = load_s;
    FillMemoryStats(model, *r);
    for (int slot = 0; slot < model.prefetcher().num_slots(); ++slot)
      if (const BackendTable* t = model.backend_table(slot)) {
        const BackendTableStats ts = t->stats();
        r->device_lookups += ts.lookups;
        r->device_hits += ts.cache_hits;
        r->device_transferred += ts.transferred;
      }
    r->graph_steps = model.graph_stats().graph_steps;
    results.emplace_back(full_name, *r);
  }

  const Result* dense = nullptr;
  for (const auto& [name, r] : results)
    if (name == "dense") dense = &r;
  std::printf("%-13s %8s %7s %10s %10s %8s %11s %13s %7s %8s\n", "config", "seconds", "steps",
              "out tok/s", "total tok/s", "vs dense", "stall ms/st", "prefetch ms/st", "unique",
              "hit rate");
  for (const auto& [name, r] : results) {
    const double out_tps = static_cast<double>(w.output_tokens) / r.seconds;
    const double tot_tps = static_cast<double>(w.prompt_tokens + w.output_tokens) / r.seconds;
    char ratio[16] = "-", hit[16] = "-";
    if (dense != nullptr) std::snprintf(ratio, sizeof ratio, "%.4f", dense->seconds / r.seconds);
    if (r.hit_rate >= 0) std::snprintf(hit, sizeof hit, "%.3f", r.hit_rate);
    std::printf("%-13s %8.2f %7lld %10.1f %10.1f %8s %11.3f %13.3f %7.3f %8s\n", name.c_str(),
                r.seconds, static_cast<long long>(r.steps), out_tps, tot_tps, ratio,
                r.stall_ms_per_step, r.prefetch_ms_per_step, r.unique_ratio, hit);
  }
  for (const auto& [name, r] : results)
    if (name != "dense")
      std::printf("%s: load %.2f s; rows from RAM %llu, from SSD %llu, from cache %llu\n",
                  name.c_str(), r.load_seconds, static_cast<unsigned long long>(r.rows_ram),
                  static_cast<unsigned long long>(r.rows_ssd),
                  static_cast<unsigned long long>(r.rows_cache));
  bool any_pkm = false;
  for (const auto& [name, r] : results) any_pkm |= r.pkm;
  if (any_pkm)
    std::printf("\n%-13s %-7s %13s %11s %7s %8s\n", "product-key", "path", "fetch ms/st",
                "stall ms/st", "unique", "hit rate");
  for (const auto& [name, r] : results) {
    if (!r.pkm) continue;
    char hit[16] = "-";
    if (r.pkm_hit_rate >= 0) std::snprintf(hit, sizeof hit, "%.3f", r.pkm_hit_rate);
    std::printf("%-13s %-7s %13.3f %11.3f %7.3f %8s\n", name.c_str(), r.pkm_path.c_str(),
                r.pkm_fetch_ms_per_step, r.pkm_stall_ms_per_step, r.pkm_unique_ratio, hit);
  }
  for (const auto& [name, r] : results)
    if (r.graph_steps > 0)
      std::printf("%s: %llu of %lld steps replayed from step graphs\n", name.c_str(),
                  static_cast<unsigned long long>(r.graph_steps), static_cast<long long>(r.steps));
  for (const auto& [name, r] : results)
    if (r.device_lookups > 0)
      std::printf(
          "%s: rows the backend read itself %llu, from its hot-row cache %llu (hit rate "
          "%.3f), from host memory %llu\n",
          name.c_str(), static_cast<unsigned long long>(r.device_lookups),
          static_cast<unsigned long long>(r.device_hits),
          static_cast<double>(r.device_hits) / static_cast<double>(r.device_lookups),
          static_cast<unsigned long long>(r.device_transferred));
  return 0;
}

}  // namespace engram::tool
