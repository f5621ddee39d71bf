// Backend choice at start-up. A CUDA build still starts on machines without a GPU or driver
// (the runtime is linked statically) and says why it fell back to the CPU.
#include <cstdlib>
#include <memory>
#include <string>

#include "engram/kernels/backend.h"
#include "engram/kernels/check.h"
#include "kernels/cpu/cpu_backend.h"
#if defined(ENGRAM_WITH_CUDA)
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device_probe.h"
#endif

namespace engram {

bool ParseBackendKind(std::string_view name, BackendKind* kind) {
  if (name == "auto")
    *kind = BackendKind::kAuto;
  else if (name == "cpu")
    *kind = BackendKind::kCpu;
  else if (name == "cuda")
    *kind = BackendKind::kCuda;
  else
    return false;
  return true;
}

BackendChoice CreateBackend(int threads, BackendKind kind) {
  BackendChoice choice;
  std::string why_not_cuda;
  if (kind == BackendKind::kAuto) {
    if (const char* env = std::getenv("ENGRAM_BACKEND"); env != nullptr && *env != '\0') {
      if (!ParseBackendKind(env, &kind)) {
        choice.reason = std::string("ENGRAM_BACKEND='") + env + "' is not auto, cpu or cuda";
        return choice;
      }
      if (kind == BackendKind::kCpu) why_not_cuda = "ENGRAM_BACKEND=cpu; ";
    }
  }
  if (kind == BackendKind::kCpu && why_not_cuda.empty()) why_not_cuda = "cpu backend requested; ";
  if (kind != BackendKind::kCpu) {
#if defined(ENGRAM_WITH_CUDA)
    const CudaProbe probe = ProbeCudaDevices();
    if (probe.device_count > 0) {
      std::string error;
      auto cuda = cuda::CudaBackend::Create(0, &error);
      if (cuda != nullptr) {
        choice.reason = "CUDA backend on " + cuda->description();
        choice.backend = std::move(cuda);
        return choice;
      }
      why_not_cuda = "CUDA device found (" + probe.first_device + ") but unusable: " + error;
    } else {
      why_not_cuda = "no usable CUDA device (" + probe.error + ")";
    }
#else
    why_not_cuda = "built without CUDA";
#endif
    if (kind == BackendKind::kCuda) {
      choice.reason = "the CUDA backend was asked for: " + why_not_cuda;
      return choice;
    }
    why_not_cuda += "; ";
  }
  // Created only now: its thread pool is not wanted when the device takes the work.
  auto cpu = std::make_unique<CpuBackend>(threads);
  choice.reason = why_not_cuda + "cpu backend with " + std::to_string(cpu->threads()) + " threads";
  choice.backend = std::move(cpu);
  return choice;
}

// Backends without graphs: the model asks SupportsGraphs() first, so these are never reached.
void Backend::BeginGraph() {
  ENGRAM_CHECK_MSG(false, "the %s backend has no step graphs", std::string(name()).c_str());
}
std::unique_ptr<BackendGraph> Backend::EndGraph(std::string* error) {
  *error = std::string("the ") + std::string(name()) + " backend has no step graphs";
  return nullptr;
}
bool Backend::LaunchGraph(const BackendGraph&) { return false; }

}  // namespace engram
