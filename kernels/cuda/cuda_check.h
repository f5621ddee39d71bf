// CUDA error checks for the kernel library. A failing runtime call or launch inside an op is a
// bug or a dead device (an illegal address is sticky: the context is unusable afterwards), never
// bad user input, so it prints the call, file and line and aborts, like ENGRAM_CHECK. Calls that
// can fail for reasons outside the program (allocations at set-up, loading cuBLASLt) return an
// error string to the caller instead.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#define ENGRAM_CUDA_CHECK(expr)                                                               \
  do {                                                                                        \
    const cudaError_t engram_cuda_err_ = (expr);                                              \
    if (engram_cuda_err_ != cudaSuccess) {                                                    \
      std::fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr,           \
                   cudaGetErrorName(engram_cuda_err_), cudaGetErrorString(engram_cuda_err_)); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// After every <<<...>>>: catches a bad launch configuration at once (errors inside the kernel
// surface at the next synchronising call, which is checked too).
#define ENGRAM_CUDA_CHECK_LAUNCH() ENGRAM_CUDA_CHECK(cudaGetLastError())

namespace engram::cuda {

// "what: cudaErrorX: description", for the calls that report errors instead of aborting.
inline std::string CudaErrorText(const char* what, cudaError_t err) {
  return std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
}

}  // namespace engram::cuda
