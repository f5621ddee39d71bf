// Backend choice at start-up. A CUDA build still starts on machines without a GPU or driver
// (the runtime is linked statically) and says why it fell back to the CPU.
#include <memory>
#include <string>

#include "engram/kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#if defined(ENGRAM_WITH_CUDA)
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_probe.h"
#endif

namespace engram {

BackendChoice CreateBackend(int threads) {
  BackendChoice choice;
#if defined(ENGRAM_WITH_CUDA)
  std::string why_not_cuda;
  const CudaProbe probe = ProbeCudaDevices();
  if (probe.device_count > 0) {
    std::string error;
    auto cuda = cuda::CudaBackend::Create(0, &error);
    if (cuda != nullptr) {
      choice.reason = "CUDA backend on " + cuda->description();
      choice.backend = std::move(cuda);
      return choice;
    }
    why_not_cuda = "CUDA device found (" + probe.first_device + ") but unusable: " + error + "; ";
  } else {
    why_not_cuda = "no usable CUDA device (" + probe.error + "); ";
  }
#else
  const std::string why_not_cuda = "built without CUDA; ";
#endif
  // Created only now: its thread pool is not wanted when the device takes the work.
  auto cpu = std::make_unique<CpuBackend>(threads);
  choice.reason = why_not_cuda + "cpu backend with " + std::to_string(cpu->threads()) + " threads";
  choice.backend = std::move(cpu);
  return choice;
}

}  // namespace engram
