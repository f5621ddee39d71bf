// The device hot-row cache (DESIGN §3, first tier): a set-associative cache of packed Engram
// table rows in HBM in front of the pinned host table. Zipf-distributed lookups make a small
// cache catch most rows, and only misses cross PCIe.
//
// One Fetch per Engram layer per step, all on the device (the host never waits for the miss
// list):
//   Lookup  probe: each id checks the `ways` tags of its set; a hit marks its way used this call;
//           assign: each miss claims the least recently used way of its set not used this call
//           (atomic on the way's stamp, so two misses never take one way); a set with more
//           distinct ids this call than ways sends the extra ones around the cache (bypass).
//   Fill    the misses' rows from the pinned host table over PCIe (row_copy.cuh's zero-copy
//           gather) into their new ways, bypassed rows straight into the output;
//   Collect every cached row of the call from HBM into the output.
// Ids within one call must be distinct (the prefetcher de-duplicates a step's rows).
// Not thread-safe: one stream drives a cache; ReadStats synchronises with it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

#include "engram/kernels/host_device.h"
#include "kernels/cuda/ops.h"

namespace engram::cuda {

// The set of a table row: a 64-bit finaliser (murmur3's fmix64) so neighbouring ids, which
// n-gram hashing makes no more likely than any others but a table of several heads lays out
// in runs, spread over all sets.
ENGRAM_HD uint64_t RowCacheSet(int64_t id, uint64_t num_sets) {
  uint64_t x = static_cast<uint64_t>(id);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x % num_sets;
}

struct RowCacheStats {
  uint64_t lookups = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;    // rows that crossed PCIe (bypassed ones included)
  uint64_t bypassed = 0;  // misses whose set was full of this call's rows
};

class DeviceRowCache {
 public:
  // capacity_rows is rounded down to a multiple of `ways` (at least one set); max_batch bounds
  // the ids of one call. Fails (with the reason) when device memory runs out.
  static std::unique_ptr<DeviceRowCache> Create(const DeviceInfo& info, int64_t capacity_rows,
                                                int ways, int64_t row_bytes, int max_batch,
                                                std::string* error);
  ~DeviceRowCache();
  DeviceRowCache(const DeviceRowCache&) = delete;
  DeviceRowCache& operator=(const DeviceRowCache&) = delete;

  // out[i * out_stride] = packed row ids[i] of the host table (PinnedHostTable::device_ptr()),
  // for `count` distinct ids in device memory.
  void Fetch(const int64_t* ids, int count, const void* host_table, void* out, int64_t out_stride,
             cudaStream_t stream);

  // The steps of Fetch, for tests and for callers that want the miss list: after Lookup,
  // slots()[i] is the way of ids[i] (>= 0) or -1 for a bypassed miss, and miss_items()[0 ..
  // *miss_count()) are the indices i that missed.
  void Lookup(const int64_t* ids, int count, cudaStream_t stream);
  const int32_t* slots() const { return slots_; }
  const int32_t* miss_items() const { return miss_items_; }
  const int32_t* miss_count() const { return miss_count_; }

  // Waits for `stream` (the one that drives the cache) and reads the counters.
  RowCacheStats ReadStats(cudaStream_t stream) const;
  int64_t capacity_rows() const { return num_sets_ * ways_; }
  int ways() const { return ways_; }

 private:
  DeviceRowCache() = default;

  int64_t num_sets_ = 0;
  int ways_ = 0;
  int64_t row_bytes_ = 0;
  int max_batch_ = 0;
  int gather_blocks_ = 0;
  uint32_t epoch_ = 0;
  uint64_t lookups_ = 0;
  char* rows_ = nullptr;                    // [sets * ways][row_bytes]
  int64_t* tags_ = nullptr;                 // [sets * ways] table row or -1
  unsigned* stamps_ = nullptr;              // [sets * ways] epoch of the last call that used it
  int32_t* slots_ = nullptr;                // [max_batch]
  int32_t* miss_items_ = nullptr;           // [max_batch]
  int32_t* miss_count_ = nullptr;           // [1]
  unsigned long long* counters_ = nullptr;  // hits, misses, bypassed
};

}  // namespace engram::cuda
