// GetDeviceInfo: the few device attributes the launchers size grids from. Read once by the
// caller and passed in (no cached global), so tests and several devices need no set-up order.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops.h"

namespace engram::cuda {

DeviceInfo GetDeviceInfo(int device) {
  DeviceInfo info;
  info.device = device;
  ENGRAM_CUDA_CHECK(cudaDeviceGetAttribute(&info.num_sms, cudaDevAttrMultiProcessorCount, device));
  int unified = 0;
  ENGRAM_CUDA_CHECK(cudaDeviceGetAttribute(&unified, cudaDevAttrUnifiedAddressing, device));
  info.unified_addressing = unified != 0;
  return info;
}

}  // namespace engram::cuda
