// Product-key memory layers (Memory+, DESIGN §2.4) of one model: the memory-layer module that
// replaces the MLP of its blocks. It owns the layers' step buffers, the values tables (in the
// table-store tiers like Engram's, one shared or one per layer) and how their rows reach the
// backend. Rows are chosen by a top-k over product keys of the hidden state, so they are known
// only inside the block: the module issues the chooser ops, then either the backend reads the
// chosen rows in place (the CPU over a table in process memory: no host step at all), or the
// forward pass ends a segment there and Fetch gathers the distinct rows on the host (staged, any
// tier) or lets the backend read them from the pinned table (ids, a device over a RAM table).
// Not thread-safe: the engine thread drives it; stats() may be read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/memory/table_store.h"
#include "server/model/model_files.h"
#include "server/model/weights.h"

namespace engram {

// How a values table's rows reach the backend.
enum class ProductKeyRowPath {
  kDirect,  // a host-memory backend reads the table in place (ram tier, or mmap of a non-fp8 file)
  kStaged,  // the host gathers the distinct rows (any tier) and uploads them packed
  kIds,     // the host uploads the distinct ids; the backend reads the pinned RAM table itself
};

struct ProductKeyMemoryOptions {
  TableStoreOptions store;
  // Per values table (its table_files key: "shared" or the layer) overrides of `store`.
  std::map<std::string, TableStoreOptions> per_table;
  std::optional<ProductKeyRowPath> row_path;  // unset: the fastest the table and backend allow
  uint64_t device_cache_bytes = 0;            // kIds: the backend's hot-row cache per table
  const TableStoreOptions& ForTable(const std::string& key) const {
    auto it = per_table.find(key);
    return it == per_table.end() ? store : it->second;
  }
};

// Counters since load; relaxed atomics.
struct ProductKeyStats {
  std::atomic<uint64_t> reads{0};        // layer reads (one per layer per step)
  std::atomic<uint64_t> lookups{0};      // value-row references: tokens x heads x knn
  std::atomic<uint64_t> unique_rows{0};  // distinct rows per read, summed (host-fetched reads)
  std::atomic<uint64_t> fetch_ns{0};     // host time gathering and handing over rows
  std::atomic<uint64_t> stall_ns{0};     // time the step waited for rows (fetch + index download)
};

class ProductKeyMemory {
 public:
  // Every values table with its options, for the free-memory check of all memory tables.
  static std::vector<std::pair<ModelTable, TableStoreOptions>> Tables(
      const ModelFiles& files, const ProductKeyMemoryOptions& o);
  static absl::StatusOr<std::unique_ptr<ProductKeyMemory>> Open(const ModelFiles& files,
                                                                const Weights& weights,
                                                                Backend* backend,
                                                                const ProductKeyMemoryOptions& o);

  // True when slot's rows need the host between the chooser and the read (a segment cut).
  bool host_fetch(int slot) const { return path_of(slot) != ProductKeyRowPath::kDirect; }
  ProductKeyRowPath path_of(int slot) const { return paths_[table_of_[slot]]; }
  ProductKeyRowPath table_path(size_t table) const { return paths_[table]; }
  const TableStore& store_of(int slot) const { return *stores_[table_of_[slot]]; }
  const std::vector<std::string>& table_keys() const { return keys_; }
  const TableStore& store(size_t table) const { return *stores_[table]; }
  const TableStoreOptions& table_options(size_t table) const { return options_[table]; }
  const ProductKeyStats& stats() const { return stats_; }

  // Bytes of the step buffers for steps of `rows` rows, as ReserveStep allocates them (both
  // read one per-row table), for the engine's activation estimate.
  uint64_t StepBytes(int64_t rows) const;
  // Grows the step buffers for `rows` rows; true when one moved.
  bool ReserveStep(int64_t rows);
  // Steps 1-6 over xn = RMSNorm_post_attention(h) ([rows][D]): the query, the sub-key scores,
  // both top-k, the candidate grid and its softmax; the swilu and gating projections of xn too
  // (a device overlaps them with the fetch).
  void IssueChoose(int slot, const float* xn, int64_t rows);
  // Between segments, when host_fetch(slot): brings the chosen rows to the backend.
  absl::Status Fetch(int slot, int64_t rows);
  // Steps 7-9: the weighted row sum, the projection, the gate; h += o (o stays in output()).
  void IssueRead(int slot, int64_t rows, float* h);
  // o of `slot` ([rows][D]) after its IssueRead, until the next layer's.
  const float* output(int slot) const;
  // Counts one layer's read of `rows` rows; called outside the ops (a graph replays no code).
  void CountRead(int64_t rows);
  const int64_t* indices() const { return idx_.get<int64_t>(); }  // [rows][H][k] after Choose

 private:
  ProductKeyMemory(const ModelConfig& c, const Weights& w, Backend* b) : c_(c), w_(w), b_(b) {}
  int64_t MaxPackedBytes() const;  // the widest values row, packed
  const ModelConfig& c_;
  const Weights& w_;
  Backend* b_;
  std::vector<std::string> keys_;                    // per table
  std::vector<std::unique_ptr<TableStore>> stores_;  // per table
  std::vector<ProductKeyRowPath> paths_;             // per table
  std::vector<TableStoreOptions> options_;           // per table
  std::vector<const void*> direct_rows_;             // per table, kDirect: packed rows in place
  std::vector<std::unique_ptr<BackendTable>> backend_tables_;  // per table, kIds
  std::vector<size_t> table_of_;                               // per slot
  bool any_host_fetch_ = false;
  int64_t reserved_rows_ = 0;
  BackendBuffer q_, scores_, best_scores_, best_ids_, weights_, idx_, y_, g_, gate_, o_;
  BackendBuffer packed_, ref_, unique_;  // host-fetched rows, their refs, distinct ids
  const int64_t* read_rows_ = nullptr;   // what IssueRead's sum reads: refs or indices
  const void* read_packed_ = nullptr;
  // Host copies for the fetch.
  std::vector<int64_t> host_idx_, host_unique_, host_ref_;
  std::vector<std::byte> host_packed_;
  ProductKeyStats stats_;
};

}  // namespace engram
