#include "server/metrics/memory_tier_collector.h"

#include <cstdint>

#include "server/metrics/families.h"

namespace engram {

namespace {

struct StoreTotals {
  uint64_t requested = 0;
  uint64_t rows_cache = 0, rows_ram = 0, rows_ssd = 0;
  uint64_t bytes_cache = 0, bytes_ram = 0, bytes_ssd = 0;
  uint64_t ssd_reads = 0, ssd_read_bytes = 0;
};

uint64_t Load(const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); }

void Accumulate(const TableStoreStats& s, StoreTotals* t) {
  t->requested += Load(s.rows_requested);
  t->rows_cache += Load(s.rows_from_cache);
  t->rows_ram += Load(s.rows_from_ram);
  t->rows_ssd += Load(s.rows_from_ssd);
  t->bytes_cache += Load(s.bytes_from_cache);
  t->bytes_ram += Load(s.bytes_from_ram);
  t->bytes_ssd += Load(s.bytes_from_ssd);
  t->ssd_reads += Load(s.ssd_reads);
  t->ssd_read_bytes += Load(s.ssd_read_bytes);
}

StoreTotals SumStores(const EngramPrefetcher& p) {
  StoreTotals t;
  for (int slot = 0; slot < p.num_slots(); ++slot) Accumulate(p.store(slot).stats(), &t);
  return t;
}

struct ProductKeyTotals {
  uint64_t lookups = 0, unique = 0, fetch_ns = 0, stall_ns = 0;
};

double Ratio(uint64_t num, uint64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace

std::vector<prometheus::MetricFamily> MemoryTierCollector::Collect() const {
  using metrics_internal::AddSample;
  using metrics_internal::NewFamily;
  using prometheus::MetricType;
  const Model* model = model_.load(std::memory_order_acquire);
  if (model == nullptr) return {};
  const EngramPrefetcher* p = &model->prefetcher();
  // Rows a backend (a GPU) read from the pinned tables itself, and how many its hot-row cache
  // served; zero on the CPU and on the staged paths.
  BackendTableStats dev;
  for (int slot = 0; slot < p->num_slots(); ++slot)
    if (const BackendTable* bt = model->backend_table(slot)) {
      const BackendTableStats s = bt->stats();
      dev.lookups += s.lookups;
      dev.cache_hits += s.cache_hits;
      dev.transferred += s.transferred;
    }
  const StoreTotals t = SumStores(*p);
  const PrefetchStats& ps = p->stats();
  const std::string& m = model_name_;
  std::vector<prometheus::MetricFamily> out;
  auto add = [&](const char* name, const char* help, MetricType type, double value) {
    out.push_back(NewFamily(name, help, type));
    AddSample(out.back(), m, value);
  };
  auto add_tiers = [&](const char* name, const char* help, uint64_t cache, uint64_t ram,
                       uint64_t ssd) {
    out.push_back(NewFamily(name, help, MetricType::Counter));
    AddSample(out.back(), m, static_cast<double>(cache), {{"tier", "cache"}});
    AddSample(out.back(), m, static_cast<double>(ram), {{"tier", "ram"}});
    AddSample(out.back(), m, static_cast<double>(ssd), {{"tier", "ssd"}});
  };

  add("engram:engram_layers", "Engram layers with an open table (0: Engram disabled).",
      MetricType::Gauge, static_cast<double>(p->num_slots()));
  add_tiers("engram:engram_rows_total",
            "Engram table rows served, by where they came from (ram includes the mmap tier).",
            t.rows_cache, t.rows_ram, t.rows_ssd);
  add_tiers("engram:engram_bytes_total", "Packed Engram row bytes served, by tier.", t.bytes_cache,
            t.bytes_ram, t.bytes_ssd);
  add("engram:engram_rows_requested_total",
      "Engram rows requested from the table stores (after per-step de-duplication).",
      MetricType::Counter, static_cast<double>(t.requested));
  // Only the SSD tier has a row cache, and each of its rows is either a hit or a read, so
  // hits / (hits + reads) is the hit rate of the cache without knowing which stores have one.
  add("engram:engram_cache_hit_rate",
      "Fraction of SSD-tier row lookups served by the RAM row cache since start (0 when none).",
      MetricType::Gauge, Ratio(t.rows_cache, t.rows_cache + t.rows_ssd));
  add("engram:engram_device_rows_total",
      "Engram rows the compute backend read from the pinned host tables itself (zero-copy path).",
      MetricType::Counter, static_cast<double>(dev.lookups));
  add("engram:engram_device_cache_hits_total",
      "Of those, rows served by the backend's hot-row cache in device memory.", MetricType::Counter,
      static_cast<double>(dev.cache_hits));
  add("engram:engram_device_cache_hit_rate",
      "Fraction of the backend's Engram row reads served by its hot-row cache since start.",
      MetricType::Gauge, Ratio(dev.cache_hits, dev.lookups));
  const StepGraphStats graphs = model->graph_stats();
  add("engram:step_graph_steps_total",
      "Decode steps replayed entirely from recorded step graphs (CUDA graphs on a GPU).",
      MetricType::Counter, static_cast<double>(graphs.graph_steps));
  add("engram:step_graphs_recorded_total",
      "Step graph segments recorded (one per Engram segment per padded batch and context).",
      MetricType::Counter, static_cast<double>(graphs.recorded));
  add("engram:engram_ssd_reads_total",
      "Read calls issued by the SSD tier (adjacent rows share one).", MetricType::Counter,
      static_cast<double>(t.ssd_reads));
  add("engram:engram_ssd_read_bytes_total",
      "Bytes read by the SSD tier's read calls, gaps between adjacent rows included.",
      MetricType::Counter, static_cast<double>(t.ssd_read_bytes));

  const uint64_t lookups = Load(ps.lookups);
  add("engram:engram_lookups_total", "Engram row references (tokens x heads x layers) looked up.",
      MetricType::Counter, static_cast<double>(lookups));
  add("engram:engram_unique_row_ratio",
      "Unique rows / row references since start: what de-duplication leaves to fetch.",
      MetricType::Gauge, Ratio(Load(ps.unique_rows), lookups));
  add("engram:engram_prefetch_steps_total", "Engine steps whose Engram rows were looked up.",
      MetricType::Counter, static_cast<double>(Load(ps.steps)));
  add("engram:engram_prefetch_seconds_total",
      "Time spent looking Engram rows up (asynchronous: submit to last layer ready).",
      MetricType::Counter, static_cast<double>(Load(ps.prefetch_ns)) * 1e-9);
  add("engram:engram_prefetch_stall_seconds_total",
      "Time the forward pass blocked waiting for Engram rows.", MetricType::Counter,
      static_cast<double>(Load(ps.stall_ns)) * 1e-9);
  // Every memory kind under one name with a `kind` label (the engram_* families above stay for
  // dashboards written before product-key memory).
  const ProductKeyMemory* pm = model->product_key();
  StoreTotals pt;
  ProductKeyTotals pk;
  if (pm != nullptr) {
    for (size_t i = 0; i < pm->table_keys().size(); ++i) Accumulate(pm->store(i).stats(), &pt);
    pk = {Load(pm->stats().lookups), Load(pm->stats().unique_rows), Load(pm->stats().fetch_ns),
          Load(pm->stats().stall_ns)};
  }
  struct Kind {
    const char* name;
    const StoreTotals& rows;
    uint64_t lookups, unique, fetch_ns, stall_ns;
  };
  const Kind kinds[] = {
      {"engram", t, lookups, Load(ps.unique_rows), Load(ps.prefetch_ns), Load(ps.stall_ns)},
      {"product_key", pt, pk.lookups, pk.unique, pk.fetch_ns, pk.stall_ns}};
  out.push_back(NewFamily("engram:memory_rows_total",
                          "Memory table rows served, by memory kind and by tier (ram includes "
                          "the mmap tier).",
                          MetricType::Counter));
  for (const Kind& k : kinds) {
    AddSample(out.back(), m, static_cast<double>(k.rows.rows_cache),
              {{"kind", k.name}, {"tier", "cache"}});
    AddSample(out.back(), m, static_cast<double>(k.rows.rows_ram),
              {{"kind", k.name}, {"tier", "ram"}});
    AddSample(out.back(), m, static_cast<double>(k.rows.rows_ssd),
              {{"kind", k.name}, {"tier", "ssd"}});
  }
  auto add_kinds = [&](const char* name, const char* help, auto value) {
    out.push_back(NewFamily(name, help, MetricType::Counter));
    for (const Kind& k : kinds) AddSample(out.back(), m, value(k), {{"kind", k.name}});
  };
  add_kinds("engram:memory_lookups_total",
            "Memory row references (tokens x heads x layers; product key: x knn), by kind.",
            [](const Kind& k) { return static_cast<double>(k.lookups); });
  add_kinds("engram:memory_unique_rows_total",
            "Distinct rows fetched after per-step de-duplication, by kind (product key: host "
            "fetches only).",
            [](const Kind& k) { return static_cast<double>(k.unique); });
  add_kinds("engram:memory_fetch_seconds_total",
            "Time spent fetching memory rows, by kind (Engram: the prefetcher's).",
            [](const Kind& k) { return static_cast<double>(k.fetch_ns) * 1e-9; });
  add_kinds("engram:memory_stall_seconds_total",
            "Time the forward pass waited for memory rows, by kind.",
            [](const Kind& k) { return static_cast<double>(k.stall_ns) * 1e-9; });
  add("engram:engram_prefetch_errors_total", "Engram lookups that failed (SSD I/O errors).",
      MetricType::Counter, static_cast<double>(Load(ps.errors)));
  return out;
}

}  // namespace engram
