// Backend choice at start-up. A CUDA build still starts on machines without a GPU or driver
// (the runtime is linked statically) and says why it fell back to the CPU.
#include <memory>
#include <string>

#include "engram/kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#if defined(ENGRAM_WITH_CUDA)
#include "kernels/cuda/device_probe.h"
#endif

namespace engram {

BackendChoice CreateBackend(int threads) {
  BackendChoice choice;
  auto cpu = std::make_unique<CpuBackend>(threads);
  const std::string cpu_desc = "cpu backend with " + std::to_string(cpu->threads()) + " threads";
#if defined(ENGRAM_WITH_CUDA)
  const CudaProbe probe = ProbeCudaDevices();
  if (probe.device_count > 0) {
    choice.reason = "CUDA device found (" + probe.first_device +
                    ") but this build has no CUDA backend ops yet; " + cpu_desc;
  } else {
    choice.reason = "no usable CUDA device (" + probe.error + "); " + cpu_desc;
  }
#else
  choice.reason = "built without CUDA; " + cpu_desc;
#endif
  choice.backend = std::move(cpu);
  return choice;
}

}  // namespace engram
