#include <cuda_runtime.h>

#include "kernels/cuda/device_probe.h"

namespace engram {

CudaProbe ProbeCudaDevices() {
  CudaProbe probe;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    probe.error = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + ": " +
                  cudaGetErrorString(err);
    return probe;
  }
  if (count == 0) {
    probe.error = "cudaGetDeviceCount returned 0 devices";
    return probe;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    probe.first_device =
        std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor);
  }
  probe.device_count = count;
  return probe;
}

}  // namespace engram
