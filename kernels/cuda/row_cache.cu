// The device row cache of row_cache.h: probe and assign kernels, and the fill / collect copies
// through row_copy.cuh.
#include <cuda_runtime.h>

#include "engram/kernels/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/gather.h"
#include "kernels/cuda/row_cache.h"
#include "kernels/cuda/row_copy.cuh"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kEmpty = -1;

struct CacheView {
  int64_t num_sets;
  int ways;
  int64_t* tags;
  unsigned* stamps;
  int32_t* slots;
  int32_t* miss_items;
  int32_t* miss_count;
  unsigned long long* counters;
};

__global__ void ProbeKernel(CacheView c, const int64_t* ids, int count, unsigned epoch) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  bool hit = false;
  if (i < count) {
    const int64_t id = ids[i];
    const int64_t base = static_cast<int64_t>(RowCacheSet(id, c.num_sets)) * c.ways;
    for (int w = 0; w < c.ways; ++w)
      if (c.tags[base + w] == id) {
        // Marks the way used this call so no miss of this call evicts it.
        c.stamps[base + w] = epoch;
        c.slots[i] = static_cast<int32_t>(base + w);
        hit = true;
        break;
      }
    if (!hit) c.miss_items[atomicAdd(c.miss_count, 1)] = i;
  }
  // One counter update per warp instead of one per hit.
  const unsigned hits = __popc(__ballot_sync(kFullWarp, hit));
  if ((threadIdx.x & 31) == 0 && hits != 0) atomicAdd(&c.counters[0], hits);
}

__global__ void AssignKernel(CacheView c, const int64_t* ids, unsigned epoch) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= *c.miss_count) return;
  const int i = c.miss_items[j];
  const int64_t id = ids[i];
  const int64_t base = static_cast<int64_t>(RowCacheSet(id, c.num_sets)) * c.ways;
  // Volatile: other threads' claims land in L2; a stale L1 copy would only cost a failed CAS,
  // but reading through keeps the retries few.
  const volatile unsigned* stamps = c.stamps + base;
  for (;;) {
    int best = -1;
    unsigned best_age = 0, best_stamp = 0;
    for (int w = 0; w < c.ways; ++w) {
      const unsigned st = stamps[w];
      if (st == epoch) continue;  // hit or claimed by this call
      // Empty ways first, then the longest unused (wrap-safe unsigned age).
      const unsigned age = c.tags[base + w] == kEmpty ? 0xffffffffu : epoch - st;
      if (best < 0 || age > best_age) {
        best = w;
        best_age = age;
        best_stamp = st;
      }
    }
    if (best < 0) {
      c.slots[i] = -1;
      atomicAdd(&c.counters[2], 1ull);
      break;
    }
    if (atomicCAS(c.stamps + base + best, best_stamp, epoch) == best_stamp) {
      c.tags[base + best] = id;
      c.slots[i] = static_cast<int32_t>(base + best);
      break;
    }
  }
  atomicAdd(&c.counters[1], 1ull);
}

// Misses: host table row -> its new way, or -> the output when bypassed.
struct FillAddr {
  const char* table;
  const int64_t* ids;
  const int32_t* slots;
  const int32_t* miss_items;
  const int32_t* miss_count;
  char* rows;
  char* out;
  int64_t row_bytes;
  int64_t out_stride;

  __device__ int64_t Count() const { return *miss_count; }
  __device__ bool Get(int64_t j, const char** s, char** d) const {
    const int i = miss_items[j];
    const int32_t slot = slots[i];
    *s = table + ids[i] * row_bytes;
    *d = slot >= 0 ? rows + slot * row_bytes : out + i * out_stride;
    return true;
  }
};

// Cached rows (hits and fresh fills) -> the output.
struct CollectAddr {
  const int32_t* slots;
  int count;
  const char* rows;
  char* out;
  int64_t row_bytes;
  int64_t out_stride;

  __device__ int64_t Count() const { return count; }
  __device__ bool Get(int64_t i, const char** s, char** d) const {
    const int32_t slot = slots[i];
    if (slot < 0) return false;
    *s = rows + slot * row_bytes;
    *d = out + i * out_stride;
    return true;
  }
};

}  // namespace

std::unique_ptr<DeviceRowCache> DeviceRowCache::Create(const DeviceInfo& info,
                                                       int64_t capacity_rows, int ways,
                                                       int64_t row_bytes, int max_batch,
                                                       std::string* error) {
  ENGRAM_CHECK(ways > 0 && row_bytes > 0 && max_batch > 0);
  std::unique_ptr<DeviceRowCache> c(new DeviceRowCache());
  c->num_sets_ = capacity_rows / ways > 0 ? capacity_rows / ways : 1;
  c->ways_ = ways;
  c->row_bytes_ = row_bytes;
  c->max_batch_ = max_batch;
  c->gather_blocks_ = GatherBlocks(info);
  const int64_t slots = c->num_sets_ * ways;
  ENGRAM_CHECK_MSG(slots < (int64_t{1} << 31), "row cache of %lld rows: slots are int32",
                   static_cast<long long>(slots));
  auto alloc = [&](auto** ptr, size_t bytes, const char* what) {
    const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
    if (err != cudaSuccess && error->empty())
      *error = CudaErrorText(what, err) + " (" + std::to_string(bytes) + " bytes)";
    return err == cudaSuccess;
  };
  error->clear();
  bool ok = alloc(&c->rows_, static_cast<size_t>(slots * row_bytes), "device row cache rows");
  ok = ok && alloc(&c->tags_, sizeof(int64_t) * slots, "device row cache tags");
  ok = ok && alloc(&c->stamps_, sizeof(unsigned) * slots, "device row cache stamps");
  ok = ok && alloc(&c->slots_, sizeof(int32_t) * max_batch, "device row cache slots");
  ok = ok && alloc(&c->miss_items_, sizeof(int32_t) * max_batch, "device row cache misses");
  ok = ok && alloc(&c->miss_count_, sizeof(int32_t), "device row cache miss count");
  ok = ok && alloc(&c->counters_, 3 * sizeof(unsigned long long), "device row cache counters");
  if (!ok) return nullptr;  // the destructor frees what was allocated
  // Tags of all ones are -1 (empty); stamps 0 are never an epoch (epochs skip 0).
  ENGRAM_CUDA_CHECK(cudaMemset(c->tags_, 0xff, sizeof(int64_t) * slots));
  ENGRAM_CUDA_CHECK(cudaMemset(c->stamps_, 0, sizeof(unsigned) * slots));
  ENGRAM_CUDA_CHECK(cudaMemset(c->counters_, 0, 3 * sizeof(unsigned long long)));
  // cudaMemset runs on the legacy default stream, which a non-blocking stream driving the
  // cache would not wait for.
  ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());
  return c;
}

DeviceRowCache::~DeviceRowCache() {
  for (void* p : {static_cast<void*>(rows_), static_cast<void*>(tags_), static_cast<void*>(stamps_),
                  static_cast<void*>(slots_), static_cast<void*>(miss_items_),
                  static_cast<void*>(miss_count_), static_cast<void*>(counters_)})
    if (p != nullptr) ENGRAM_CUDA_CHECK(cudaFree(p));
}

void DeviceRowCache::Lookup(const int64_t* ids, int count, cudaStream_t stream) {
  ENGRAM_CHECK_MSG(count >= 0 && count <= max_batch_, "row cache lookup of %d ids, max %d", count,
                   max_batch_);
  if (++epoch_ == 0) ++epoch_;
  lookups_ += static_cast<uint64_t>(count);
  ENGRAM_CUDA_CHECK(cudaMemsetAsync(miss_count_, 0, sizeof(int32_t), stream));
  if (count == 0) return;
  const CacheView view{num_sets_, ways_,       tags_,       stamps_,
                       slots_,    miss_items_, miss_count_, counters_};
  const unsigned blocks = static_cast<unsigned>(CeilDiv(count, kThreads));
  ProbeKernel<<<blocks, kThreads, 0, stream>>>(view, ids, count, epoch_);
  ENGRAM_CUDA_CHECK_LAUNCH();
  // Sized for the worst case (every id missed); threads past the real miss count return.
  AssignKernel<<<blocks, kThreads, 0, stream>>>(view, ids, epoch_);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void DeviceRowCache::Fetch(const int64_t* ids, int count, const void* host_table, void* out,
                           int64_t out_stride, cudaStream_t stream) {
  Lookup(ids, count, stream);
  if (count == 0) return;
  // One vector width for both copies: OR-ing the addresses keeps the fewest trailing zero bits,
  // so the width divides every address either copy forms.
  const int vec = CopyVecBytes(
      row_bytes_, reinterpret_cast<uintptr_t>(host_table) | reinterpret_cast<uintptr_t>(rows_),
      reinterpret_cast<uintptr_t>(out), out_stride);
  const FillAddr fill{static_cast<const char*>(host_table),
                      ids,
                      slots_,
                      miss_items_,
                      miss_count_,
                      rows_,
                      static_cast<char*>(out),
                      row_bytes_,
                      out_stride};
  LaunchCopyRows(fill, row_bytes_, vec, gather_blocks_, stream);
  const CollectAddr collect{slots_, count, rows_, static_cast<char*>(out), row_bytes_, out_stride};
  // The collect is device to device: a full-size grid, not the persistent PCIe one.
  const int collect_blocks = static_cast<int>(CeilDiv(count, kCopyThreads / 32 * kCopyUnroll));
  LaunchCopyRows(collect, row_bytes_, vec, collect_blocks, stream);
}

RowCacheStats DeviceRowCache::ReadStats(cudaStream_t stream) const {
  unsigned long long c[3];
  ENGRAM_CUDA_CHECK(cudaMemcpyAsync(c, counters_, sizeof c, cudaMemcpyDeviceToHost, stream));
  ENGRAM_CUDA_CHECK(cudaStreamSynchronize(stream));
  RowCacheStats s;
  s.lookups = lookups_;
  s.hits = c[0];
  s.misses = c[1];
  s.bypassed = c[2];
  return s;
}

}  // namespace engram::cuda
