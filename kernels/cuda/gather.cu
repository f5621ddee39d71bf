// The zero-copy gather and the staged copy of gather.h; the copy loop is row_copy.cuh's.
#include "engram/kernels/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gather.h"
#include "kernels/cuda/row_copy.cuh"

namespace engram::cuda {
namespace {

struct IdsAddr {
  const char* src;
  int64_t row_bytes;
  const int64_t* ids;
  const int32_t* dst_rows;
  int64_t count;
  const int32_t* count_dev;
  char* dst;
  int64_t dst_stride;

  __device__ int64_t Count() const { return count_dev != nullptr ? *count_dev : count; }
  __device__ bool Get(int64_t i, const char** s, char** d) const {
    const int64_t row = dst_rows != nullptr ? dst_rows[i] : i;
    if (row < 0) return false;
    *s = src + ids[i] * row_bytes;
    *d = dst + row * dst_stride;
    return true;
  }
};

}  // namespace

std::unique_ptr<PinnedHostTable> PinnedHostTable::Register(void* data, size_t bytes,
                                                           std::string* error) {
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  int read_only = 0;
  if (err == cudaSuccess)
    err = cudaDeviceGetAttribute(&read_only, cudaDevAttrHostRegisterReadOnlySupported, device);
  // Read-only registration also pins read-only mappings (an mmap'd table file).
  unsigned flags = cudaHostRegisterMapped | cudaHostRegisterPortable;
  if (read_only) flags |= cudaHostRegisterReadOnly;
  if (err == cudaSuccess) err = cudaHostRegister(data, bytes, flags);
  void* device_ptr = nullptr;
  if (err == cudaSuccess) {
    err = cudaHostGetDevicePointer(&device_ptr, data, 0);
    if (err != cudaSuccess) ENGRAM_CUDA_CHECK(cudaHostUnregister(data));
  }
  if (err != cudaSuccess) {
    *error = CudaErrorText("registering the table in host memory as pinned", err) + " (" +
             std::to_string(bytes) + " bytes)";
    return nullptr;
  }
  return std::unique_ptr<PinnedHostTable>(new PinnedHostTable(data, device_ptr, bytes));
}

PinnedHostTable::~PinnedHostTable() { ENGRAM_CUDA_CHECK(cudaHostUnregister(host_)); }

int GatherBlocks(const DeviceInfo& info, int sm_budget) {
  const int sms = sm_budget < info.num_sms ? sm_budget : info.num_sms;
  return 2 * (sms > 0 ? sms : 1);
}

void GatherRows(const GatherParams& p, cudaStream_t stream) {
  ENGRAM_CHECK(p.row_bytes > 0 && p.blocks > 0);
  if (p.count_dev == nullptr && p.count == 0) return;
  const int64_t stride = p.dst_stride != 0 ? p.dst_stride : p.row_bytes;
  const IdsAddr addr{
      static_cast<const char*>(p.src), p.row_bytes, p.ids, p.dst_rows, p.count, p.count_dev,
      static_cast<char*>(p.dst),       stride};
  const int vec = CopyVecBytes(p.row_bytes, reinterpret_cast<uintptr_t>(p.src),
                               reinterpret_cast<uintptr_t>(p.dst), stride);
  LaunchCopyRows(addr, p.row_bytes, vec, p.blocks, stream);
}

void CopyStaged(const void* pinned_staging, void* dst, size_t bytes, cudaStream_t copy_stream,
                cudaEvent_t done) {
  ENGRAM_CUDA_CHECK(
      cudaMemcpyAsync(dst, pinned_staging, bytes, cudaMemcpyHostToDevice, copy_stream));
  if (done != nullptr) ENGRAM_CUDA_CHECK(cudaEventRecord(done, copy_stream));
}

}  // namespace engram::cuda
