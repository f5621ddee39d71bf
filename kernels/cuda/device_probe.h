// Finds CUDA devices without requiring a driver: the runtime is linked statically, so on a
// machine with no GPU this returns an error string instead of failing to start.
#pragma once

#include <string>

namespace engram {

struct CudaProbe {
  int device_count = 0;
  std::string first_device;  // name and compute capability of device 0
  std::string error;         // why no device is usable, when device_count == 0
};

CudaProbe ProbeCudaDevices();

}  // namespace engram
