// The Engram table store (DESIGN §3): one call, "copy these global rows into this buffer", with
// tiers behind it. Rows travel packed and still quantised: the row's d values in the table dtype
// followed, for fp8 tables, by its d/32 ue8m0 scale bytes. The consumer dequantises (the CPU
// prefetcher here, a device kernel on CUDA), so the bytes that cross a bus are the stored bytes.
//
// Tiers: kMmap reads the mmap'd file directly (the page cache decides what is in RAM; the
// reference path tests compare against), kRam copies the table into process memory at start-up,
// kSsd reads rows with pread from the file without loading it, behind an optional RAM row cache.
// A store is driven by one thread at a time (the prefetch thread, or the engine thread when
// prefetch is off); stats() may be read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/dtype.h"
#include "server/util/safetensors.h"

namespace engram {

struct TableLayout {
  int64_t rows = 0;
  int d = 0;  // values per row
  DType dtype = DType::kF32;
  uint64_t data_bytes = 0;    // d * dtype size
  uint64_t packed_bytes = 0;  // data_bytes + (fp8 ? d/32 : 0)
};

enum class TableTier { kMmap, kRam, kSsd };
enum class CachePolicy { kLru, kLfu };

struct TableStoreOptions {
  TableTier tier = TableTier::kMmap;
  uint64_t cache_bytes = 0;  // kSsd: RAM row cache in front of the file (0 = none)
  CachePolicy cache_policy = CachePolicy::kLfu;  // LFU wins on Zipf ids (gather_bench)
  bool huge_pages = false;                       // kRam: back the copy with transparent huge pages
  bool mlock = false;                            // kRam: lock the copy in RAM
  bool progress = true;                          // kRam: progress line on stderr while loading
  bool direct_io = false;                        // kSsd: O_DIRECT reads that bypass the page cache
  int io_threads = 16;  // kSsd: reads in flight at once within a Gather (1 = caller only)
};

// Counters, monotonically increasing; read with relaxed loads.
struct TableStoreStats {
  std::atomic<uint64_t> rows_requested{0};
  std::atomic<uint64_t> rows_from_cache{0};  // row cache hits
  std::atomic<uint64_t> rows_from_ram{0};    // kRam and kMmap reads
  std::atomic<uint64_t> rows_from_ssd{0};    // kSsd reads that missed the cache
  std::atomic<uint64_t> bytes_from_cache{0};
  std::atomic<uint64_t> bytes_from_ram{0};
  std::atomic<uint64_t> bytes_from_ssd{0};
  std::atomic<uint64_t> ssd_reads{0};       // kSsd: read calls (adjacent rows share one)
  std::atomic<uint64_t> ssd_read_bytes{0};  // kSsd: bytes those calls read, gaps included
};

class TableStore {
 public:
  virtual ~TableStore() = default;
  const TableLayout& layout() const { return layout_; }
  const TableStoreStats& stats() const { return stats_; }
  virtual std::string_view tier_name() const = 0;

  // dst[i * packed_bytes ...] = packed row ids[i]. Ids are in [0, rows) (checked by the caller).
  // Fails (and names the file) only on an I/O error of the SSD tier.
  virtual absl::Status Gather(std::span<const int64_t> ids, std::byte* dst) = 0;
  // Every packed row in process memory ([rows][packed_bytes]), when the tier keeps the whole
  // table there (ram): a device backend may then read rows from it directly. nullptr otherwise.
  virtual const std::byte* resident_rows() const { return nullptr; }

 protected:
  TableLayout layout_;
  TableStoreStats stats_;
};

// The same on a bare safetensors file: `tensor` is the [rows, d] table (f32, bf16, f16 or fp8
// e4m3); for fp8, `scale_tensor` is its [rows, d/32] U8 scale (ignored for other dtypes).
absl::StatusOr<std::unique_ptr<TableStore>> OpenTableStoreFromFile(const std::string& path,
                                                                   std::string_view tensor,
                                                                   std::string_view scale_tensor,
                                                                   const TableStoreOptions& opt);

// A memory table of any kind in an opened safetensors file: the [rows, d] tensor and, for fp8,
// its [rows, d/32] scale tensor. Errors name the file and the reason (not enough free memory or
// disk for the tier, unreadable file). server/model/model_tables.h names a model's tables.
struct ModelTable {
  const SafetensorsFile* file = nullptr;
  std::string tensor;
  std::string scale_tensor;
};
absl::StatusOr<std::unique_ptr<TableStore>> OpenTableStore(const ModelTable& table,
                                                           const TableStoreOptions& opt);
std::string_view TableTierName(TableTier tier);  // "mmap", "ram", "ssd"

// Checks that all of `tables` fit their tiers at once (OpenTableStore checks one table against
// what is free when it is opened): call before opening the first, so that nothing is loaded when
// the total does not fit. The message names the files and the bytes.
absl::Status CheckTableStoresFit(
    const std::vector<std::pair<ModelTable, TableStoreOptions>>& tables);

// Dequantises `n` packed rows into float rows of d values.
void DequantPackedRows(const TableLayout& l, const std::byte* packed, int64_t n, float* out);

}  // namespace engram
