// Engram rows from host memory to the device (DESIGN §3), the two paths the benchmark compares:
//  1. staged: the CPU gathers the rows into a pinned staging buffer (the table store's Gather),
//     then CopyStaged moves the buffer on a copy stream and records an event that the compute
//     stream waits on right before the Engram layer;
//  2. zero-copy: GatherRows reads the rows straight out of the pinned table through unified
//     addressing, one warp (or sub-warp for narrow rows) per row with 16-byte loads, on a
//     persistent grid of GatherBlocks blocks: a few SMs saturate PCIe, the rest keep computing.
// Path 2 needs the table registered with PinnedHostTable; the device row cache (row_cache.h)
// uses it for its misses.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cuda/ops.h"

namespace engram::cuda {

// Host memory pinned and mapped for kernels (cudaHostRegister): an existing table (e.g. the RAM
// tier's copy, or an mmap'd file, registered read-only where the device supports it) stays where
// it is. Unregisters on destruction; the memory itself stays owned by the caller.
class PinnedHostTable {
 public:
  static std::unique_ptr<PinnedHostTable> Register(void* data, size_t bytes, std::string* error);
  ~PinnedHostTable();
  PinnedHostTable(const PinnedHostTable&) = delete;
  PinnedHostTable& operator=(const PinnedHostTable&) = delete;

  // The address kernels read the table at (the host address itself under unified addressing).
  const void* device_ptr() const { return device_ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  PinnedHostTable(void* host, const void* device, size_t bytes)
      : host_(host), device_ptr_(device), bytes_(bytes) {}
  void* host_;
  const void* device_ptr_;
  size_t bytes_;
};

// Blocks of the persistent gather grid: two per SM on `sm_budget` SMs (at most the device's).
int GatherBlocks(const DeviceInfo& info, int sm_budget = 4);

struct GatherParams {
  const void* src = nullptr;  // packed table: PinnedHostTable::device_ptr() or device memory
  int64_t row_bytes = 0;
  const int64_t* ids = nullptr;       // [count] table rows, device memory
  const int32_t* dst_rows = nullptr;  // [count] destination row of item i (nullptr: i; < 0: skip)
  int64_t count = 0;
  const int32_t* count_dev = nullptr;  // when set, the count is read from device memory instead
  void* dst = nullptr;                 // device memory
  int64_t dst_stride = 0;              // bytes between destination rows (0: row_bytes)
  int blocks = 0;                      // GatherBlocks(...)
};
void GatherRows(const GatherParams& p, cudaStream_t stream);

// Path 1's device half: bytes of pinned staging to device memory on `copy_stream`, then records
// `done` (may be nullptr) for the compute stream to wait on.
void CopyStaged(const void* pinned_staging, void* dst, size_t bytes, cudaStream_t copy_stream,
                cudaEvent_t done);

}  // namespace engram::cuda
