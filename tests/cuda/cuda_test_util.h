// Shared pieces of the CUDA kernel tests: the skip when no device is present (ctest then lists
// the test as skipped, not passed), device buffers, random inputs and output poisoning.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_probe.h"

// GTEST_SKIP returns from the function it is written in, so this is a macro for test bodies.
#define ENGRAM_REQUIRE_CUDA_DEVICE()                                        \
  do {                                                                      \
    const ::engram::CudaProbe engram_probe_ = ::engram::ProbeCudaDevices(); \
    if (engram_probe_.device_count == 0)                                    \
      GTEST_SKIP() << "no CUDA device: " << engram_probe_.error;            \
  } while (0)

namespace engram::cuda::testing {

// float32 unit roundoff: the largest relative error of one rounding.
inline constexpr double kU = 1.0 / (1 << 24);

// A typed device allocation, poisoned at birth (0xff bytes: NaN for floats, -1 for integers)
// so an element a kernel forgot to write fails the comparison.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    ENGRAM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), bytes() > 0 ? bytes() : 1));
    Poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { Upload(host); }
  ~DeviceBuffer() { ENGRAM_CUDA_CHECK(cudaFree(ptr_)); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  // Both finish before returning: cudaMemset, and the DMA of a cudaMemcpy from pageable memory,
  // run on the legacy default stream, which a non-blocking stream would not wait for.
  void Poison(int byte = 0xff) {
    ENGRAM_CUDA_CHECK(cudaMemset(ptr_, byte, bytes()));
    ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void Upload(const std::vector<T>& host) {
    ENGRAM_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice));
    ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());
    ENGRAM_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// A stream per test, non-blocking as the engine's will be: the ops are asynchronous on it, and
// Download synchronises the whole device.
class Stream {
 public:
  Stream() { ENGRAM_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { ENGRAM_CUDA_CHECK(cudaStreamDestroy(s_)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void Sync() const { ENGRAM_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_ = nullptr;
};

inline std::vector<float> RandomNormal(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Bitwise equality, except that any two NaNs match (the GPU returns a canonical NaN where the
// CPU may keep a payload).
inline bool SameFloat(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

}  // namespace engram::cuda::testing
