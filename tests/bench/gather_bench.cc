// Gather micro-benchmark of the Engram table store (issue 3, benchmark 1): how fast rows are
// copied out of each tier, against the speed of a plain contiguous memcpy of the same bytes.
//
// Run (Release/RelWithDebInfo build):
//   build/default/tests/gather_bench [--table_dir=DIR] [--table_mb=1024] [--io_threads=16]
//                                    [google-benchmark flags]
// e.g. --benchmark_filter='gather/ram/' or --benchmark_filter='hit_rate'. One bf16 table file per
// row width (64, 128, 256, 512 bytes), table_mb MiB each, is written once into DIR (default:
// $ENGRAM_BENCH_DIR, else $TMPDIR/engram-gather-bench) and reused by later runs.
//
// gather/<tier>/w<width>/b<batch>/<dist> gathers `batch` rows (1K, 32K, 1M) of `width` bytes
// with ids drawn uniformly or Zipf(s = 1.0) (hot rows scattered over the table, as hashed n-grams
// are), a fresh slice of a pre-drawn id pool each iteration. Tiers: ram (the table loaded into
// memory), ram_huge (the same on transparent huge pages: fewer TLB misses), ssd (pread through a
// page cache warmed first: the best case of the SSD tier, a table that fits in the page cache),
// ssd_direct (O_DIRECT: every read goes to the device, io_threads reads in flight), ssd_direct_lfu
// (the same behind an LFU row cache of 10% of the table). Figures: GBps = useful row bytes per
// second (batch * width / time, also bytes_per_second); memcpy_GBps = a contiguous memcpy of batch
// * width bytes measured in the same process; vs_memcpy = GBps / memcpy_GBps (1.0 would mean a
// gather as fast as a straight copy).
//
// hit_rate/<policy>/<cache size % of table> streams Zipf(1.0) ids over the 64-byte table's rows
// through a RowCache (after a warm-up of the same length) and reports hit_rate, next to
// ideal = the mass of the most frequent ranks that fit (a perfect static cache). Never pass/fail.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "server/memory/row_cache.h"
#include "server/memory/table_store.h"
#include "server/util/safetensors.h"
#include "server/util/str_cat.h"

namespace engram::bench {
namespace {

namespace fs = std::filesystem;

// Zipf-distributed row ids: P(rank k) ~ 1 / k^s over ranks 1..n, drawn in O(1) time and memory
// by rejection-inversion (W. Hörmann, G. Derflinger, "Rejection-inversion to generate variates
// from monotone discrete distributions", 1996; as Apache Commons RNG's
// RejectionInversionZipfSampler).
class ZipfSampler {
 public:
  ZipfSampler(uint64_t n, double s) : n_(static_cast<double>(n)), s_(s) {
    h_x1_ = HIntegral(1.5) - 1.0;
    h_n_ = HIntegral(n_ + 0.5);
    accept_ = 2.0 - HIntegralInverse(HIntegral(2.5) - H(2.0));
  }

  // A rank in [1, n]; rank 1 is the most frequent.
  template <typename Rng>
  uint64_t operator()(Rng& rng) {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (;;) {
      const double u = h_n_ + uniform(rng) * (h_x1_ - h_n_);
      const double x = HIntegralInverse(u);
      double k = std::floor(x + 0.5);
      if (k < 1) k = 1;
      if (k > n_) k = n_;
      if (k - x <= accept_ || u >= HIntegral(k + 0.5) - H(k)) return static_cast<uint64_t>(k);
    }
  }

  // Probability mass of the `k` most frequent ranks: the hit rate of an ideal static cache.
  double TopMass(uint64_t k) const { return Harmonic(static_cast<double>(k)) / Harmonic(n_); }

 private:
  double H(double x) const { return std::exp(-s_ * std::log(x)); }
  double HIntegral(double x) const {
    const double log_x = std::log(x);
    return Helper2((1.0 - s_) * log_x) * log_x;
  }
  double HIntegralInverse(double x) const {
    double t = x * (1.0 - s_);
    if (t < -1.0) t = -1.0;
    return std::exp(Helper1(t) * x);
  }
  static double Helper1(double x) {  // log(1 + x) / x
    return std::fabs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
  }
  static double Helper2(double x) {  // (exp(x) - 1) / x
    return std::fabs(x) > 1e-8 ? std::expm1(x) / x
                               : 1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x));
  }
  // Generalised harmonic number sum_{i<=k} i^-s: exact below 1e6 terms, then Euler-Maclaurin.
  double Harmonic(double k) const {
    double sum = 0;
    const double exact = std::fmin(k, 1e6);
    for (double i = 1; i <= exact; ++i) sum += H(i);
    if (k > exact) {
      const double a = exact + 0.5, b = k + 0.5;
      sum += s_ == 1.0 ? std::log(b / a)
                       : (std::pow(b, 1.0 - s_) - std::pow(a, 1.0 - s_)) / (1.0 - s_);
    }
    return sum;
  }

  double n_, s_;
  double h_x1_ = 0, h_n_ = 0, accept_ = 0;
};

// The row of rank `rank`: a fixed pseudo-random scatter over [0, rows). Engram rows are addressed
// by hashed n-grams, so hot rows are spread over the whole table, not packed at its start.
int64_t ZipfRow(uint64_t rank, uint64_t rows) {
  uint64_t x = rank * 0x9e3779b97f4a7c15ull;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<int64_t>(x % rows);
}

std::string g_dir;
uint64_t g_table_mb = 1024;
int g_io_threads = TableStoreOptions{}.io_threads;

uint64_t TableRows(int width) { return (g_table_mb << 20) / static_cast<uint64_t>(width); }

// The table file of `width`-byte rows, written on first use. Row r holds its id and a pattern.
std::string TablePath(int width) {
  std::string path = StrCat(g_dir, "/gather-", width, "B-", g_table_mb, "MiB.safetensors");
  if (fs::exists(path)) return path;
  fs::create_directories(g_dir);
  const uint64_t rows = TableRows(width), chunk_rows = (64ull << 20) / width;
  std::fprintf(stderr, "writing %s (%llu rows)\n", path.c_str(),
               static_cast<unsigned long long>(rows));
  SafetensorsWriter w;
  w.Declare("table", DType::kBF16, {static_cast<int64_t>(rows), width / 2});
  const std::string tmp = path + ".partial";
  absl::Status st = w.Open(tmp);
  std::vector<std::byte> buf(chunk_rows * static_cast<uint64_t>(width));
  for (uint64_t r0 = 0; st.ok() && r0 < rows; r0 += chunk_rows) {
    const uint64_t n = std::min(chunk_rows, rows - r0);
    for (uint64_t i = 0; i < n; ++i) {
      std::byte* row = buf.data() + i * static_cast<uint64_t>(width);
      const uint64_t id = r0 + i;
      std::memset(row, static_cast<int>(id & 0xff), static_cast<size_t>(width));
      std::memcpy(row, &id, sizeof id);
    }
    st = w.Append(buf.data(), n * static_cast<uint64_t>(width));
  }
  if (st.ok()) st = w.Close();
  if (!st.ok()) {
    std::fprintf(stderr, "gather_bench: %s\n", std::string(st.message()).c_str());
    std::exit(1);
  }
  fs::rename(tmp, path);
  return path;
}

struct TierSpec {
  const char* name;
  TableTier tier;
  bool direct;
  bool lfu_cache;  // a 10% LFU row cache
  bool huge_pages;
};
constexpr TierSpec kTiers[] = {{"ram", TableTier::kRam, false, false, false},
                               {"ram_huge", TableTier::kRam, false, false, true},
                               {"ssd", TableTier::kSsd, false, false, false},
                               {"ssd_direct", TableTier::kSsd, true, false, false},
                               {"ssd_direct_lfu", TableTier::kSsd, true, true, false}};

// Stores are opened once per tier and width (the RAM tier loads the table).
TableStore& Store(const TierSpec& t, int width) {
  static std::map<std::pair<std::string, int>, std::unique_ptr<TableStore>> stores;
  auto& s = stores[{t.name, width}];
  if (s == nullptr) {
    TableStoreOptions opt;
    opt.tier = t.tier;
    opt.direct_io = t.direct;
    opt.io_threads = g_io_threads;
    opt.huge_pages = t.huge_pages;
    if (t.lfu_cache) {
      opt.cache_policy = CachePolicy::kLfu;
      opt.cache_bytes = TableRows(width) / 10 * RowCache::BytesPerRow(width);
    }
    auto r = OpenTableStoreFromFile(TablePath(width), "table", "", opt);
    if (!r.ok()) {
      std::fprintf(stderr, "gather_bench: %s\n", std::string(r.status().message()).c_str());
      std::exit(1);
    }
    s = std::move(r).value();
  }
  return *s;
}

// Reads the whole file so the "ssd" tier measures a warm page cache (the RAM tier's loader
// drops what it read from the page cache, so this is redone before each case).
void WarmPageCache(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return;
  std::vector<char> buf(16 << 20);
  while (std::fread(buf.data(), 1, buf.size(), f) == buf.size()) {
  }
  std::fclose(f);
}

// A pool of ids to slice batches from, drawn once per distribution and table size.
const std::vector<int64_t>& IdPool(bool zipf, uint64_t rows, uint64_t batch) {
  static std::map<std::tuple<bool, uint64_t, uint64_t>, std::vector<int64_t>> pools;
  const uint64_t n = std::max<uint64_t>(4 * batch, 1 << 20);
  auto& pool = pools[{zipf, rows, n}];
  if (pool.empty()) {
    std::mt19937_64 rng(42);
    ZipfSampler sampler(rows, 1.0);
    pool.resize(n);
    for (auto& id : pool)
      id = zipf ? ZipfRow(sampler(rng), rows) : static_cast<int64_t>(rng() % rows);
  }
  return pool;
}

// GB/s of a contiguous memcpy of `bytes`, best of several timed copies after a warm-up.
double MemcpyGBps(uint64_t bytes) {
  static std::map<uint64_t, double> measured;
  if (auto it = measured.find(bytes); it != measured.end()) return it->second;
  std::vector<std::byte> src(bytes, std::byte{1}), dst(bytes, std::byte{2});
  double best = 1e30;
  int reps = 0;
  for (double total = 0; reps < 5 || total < 0.05; ++reps) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    benchmark::ClobberMemory();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (reps > 0) best = std::min(best, s);  // the first copy faults the pages in
    total += s;
  }
  benchmark::DoNotOptimize(dst.data());
  return measured[bytes] = static_cast<double>(bytes) / best / 1e9;
}

void BM_Gather(benchmark::State& state, const TierSpec& tier, int width, uint64_t batch,
               bool zipf) {
  TableStore& store = Store(tier, width);
  if (tier.tier == TableTier::kSsd && !tier.direct) WarmPageCache(TablePath(width));
  const std::vector<int64_t>& pool = IdPool(zipf, TableRows(width), batch);
  std::vector<std::byte> dst(batch * static_cast<uint64_t>(width), std::byte{0});
  const double memcpy_gbps = MemcpyGBps(dst.size());
  const uint64_t cache0 = store.stats().rows_from_cache, req0 = store.stats().rows_requested;
  size_t at = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (at + batch > pool.size()) at = 0;
    const absl::Status st =
        store.Gather(std::span<const int64_t>(pool.data() + at, batch), dst.data());
    if (!st.ok()) state.SkipWithError(std::string(st.message()).c_str());
    at += batch;
    benchmark::ClobberMemory();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto bytes = static_cast<double>(state.iterations()) * static_cast<double>(dst.size());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  const double gbps = secs > 0 ? bytes / secs / 1e9 : 0;
  state.counters["GBps"] = gbps;
  state.counters["memcpy_GBps"] = memcpy_gbps;
  state.counters["vs_memcpy"] = gbps / memcpy_gbps;
  if (tier.lfu_cache) {
    const uint64_t req = store.stats().rows_requested - req0;
    state.counters["cache_hit"] =
        req ? static_cast<double>(store.stats().rows_from_cache - cache0) / req : 0.0;
  }
}

void BM_HitRate(benchmark::State& state, CachePolicy policy, double fraction) {
  const uint64_t rows = TableRows(64);
  const uint64_t lookups = std::clamp<uint64_t>(rows * 2, 1 << 18, 1 << 22);
  const uint64_t cache_rows = std::max<uint64_t>(8, static_cast<uint64_t>(rows * fraction));
  ZipfSampler sampler(rows, 1.0);
  double hit_rate = 0;
  uint64_t capacity = 0;
  for (auto _ : state) {
    RowCache cache(cache_rows * RowCache::BytesPerRow(64), 64, policy);
    capacity = cache.capacity_rows();
    std::mt19937_64 rng(7);
    std::byte row[64] = {};
    uint64_t hits0 = 0, misses0 = 0;
    for (uint64_t i = 0; i < 2 * lookups; ++i) {
      if (i == lookups) hits0 = cache.hits(), misses0 = cache.misses();  // end of warm-up
      const int64_t id = ZipfRow(sampler(rng), rows);
      if (cache.Lookup(id) == nullptr) cache.Insert(id, row);
    }
    hit_rate = static_cast<double>(cache.hits() - hits0) /
               static_cast<double>(cache.hits() - hits0 + cache.misses() - misses0);
  }
  state.counters["hit_rate"] = hit_rate;
  state.counters["ideal"] = sampler.TopMass(capacity);
  state.counters["cache_rows"] = static_cast<double>(capacity);
  state.counters["table_rows"] = static_cast<double>(rows);
}

void RegisterAll() {
  const char* dists[] = {"uniform", "zipf"};
  for (const TierSpec& tier : kTiers)
    for (int width : {64, 128, 256, 512})
      for (uint64_t batch : {uint64_t{1} << 10, uint64_t{1} << 15, uint64_t{1} << 20})
        for (int z = 0; z < 2; ++z) {
          if (tier.lfu_cache && z == 0) continue;  // a cache only pays on skewed ids
          const std::string name =
              StrCat("gather/", tier.name, "/w", width, "/b", batch, "/", dists[z]);
          benchmark::RegisterBenchmark(name.c_str(), BM_Gather, tier, width, batch, z == 1)
              ->UseRealTime()
              ->Unit(benchmark::kMillisecond);
        }
  for (CachePolicy p : {CachePolicy::kLru, CachePolicy::kLfu})
    for (double f : {0.001, 0.01, 0.1}) {
      const std::string name =
          StrCat("hit_rate/", p == CachePolicy::kLru ? "lru" : "lfu", "/", f * 100, "%");
      benchmark::RegisterBenchmark(name.c_str(), BM_HitRate, p, f)
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
}

}  // namespace
}  // namespace engram::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const char* env = std::getenv("ENGRAM_BENCH_DIR");
  const char* tmp = std::getenv("TMPDIR");
  engram::bench::g_dir = env ? env : std::string(tmp ? tmp : "/tmp") + "/engram-gather-bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--table_dir=", 0) == 0) {
      engram::bench::g_dir = a.substr(12);
    } else if (a.rfind("--io_threads=", 0) == 0) {
      engram::bench::g_io_threads = std::atoi(a.c_str() + 13);
    } else if (a.rfind("--table_mb=", 0) == 0) {
      engram::bench::g_table_mb = std::strtoull(a.c_str() + 11, nullptr, 10);
    } else {
      std::fprintf(stderr, "gather_bench: unknown flag %s (see the header of gather_bench.cc)\n",
                   a.c_str());
      return 2;
    }
  }
  if (engram::bench::g_table_mb == 0) return 2;
  engram::bench::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
