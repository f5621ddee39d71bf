// The forward pass's matmuls on the device: y = x W^T (+ bias) through cuBLASLt, bf16 inputs,
// fp32 accumulation (tensor cores), f32 or bf16 output. W is backend.h's Matrix layout
// [out][in] row-major, x is [m][in] row-major, y is [m][out] row-major.
//
// cuBLASLt is opened with dlopen, not linked: this toolkit ships it only as a shared library
// (libcublasLt.so.13, 540 MB, no static archive), and a binary linked against it would not start
// on a machine without the CUDA libraries, where engramd must still start and run on the CPU.
// Create() says why it cannot provide a GEMM (library missing, wrong major version, no device),
// which the backend registry can log before falling back. Only <cublasLt.h> is needed to build.
//
// Not thread-safe: one thread (and stream) drives a CublasLtGemm; its workspace is per object.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "engram/kernels/dtype.h"

namespace engram::cuda {

struct GemmArgs {
  int64_t m = 0;                  // rows of x and y (tokens)
  int64_t n = 0;                  // out features
  int64_t k = 0;                  // in features
  const uint16_t* x = nullptr;    // [m][k] bf16 (ConvertToBf16 of the activations)
  const uint16_t* w = nullptr;    // [n][k] bf16
  const float* bias = nullptr;    // [n] or nullptr
  void* y = nullptr;              // [m][n]
  DType out_dtype = DType::kF32;  // kF32 or kBF16
};

class CublasLtGemm {
 public:
  static std::unique_ptr<CublasLtGemm> Create(std::string* error);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Enqueues the GEMM on `stream`. Returns an empty string, or why cuBLASLt refused (no
  // algorithm for this shape and alignment, an invalid value).
  std::string Run(const GemmArgs& a, cudaStream_t stream);

  // Where the library was loaded from, for the start-up log.
  const std::string& library() const { return library_; }

  struct Api;  // the resolved entry points (gemm.cu)

 private:
  // Shape, output type, bias, and the alignments the heuristic was asked about.
  using AlgoKey = std::tuple<int64_t, int64_t, int64_t, int, bool, int, int, int>;
  struct Algo {
    uint64_t data[8];  // cublasLtMatmulAlgo_t, kept opaque here
  };

  CublasLtGemm() = default;

  std::unique_ptr<Api> api_;
  std::string library_;
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<AlgoKey, Algo> algos_;
};

}  // namespace engram::cuda
