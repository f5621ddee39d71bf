// CudaBackend's step graphs: a run of ops captured from the compute stream into a CUDA graph and
// launched as one unit, so a decode step costs a few launches instead of one per op per layer.
//
// Capture uses the relaxed mode: an op whose scratch buffer must grow calls cudaMalloc (through
// the caching allocator) mid-capture, which the stricter modes forbid. Such a graph is thrown
// away at EndGraph, since the block the buffer held before may be handed to someone else. The
// uploads a step needs were issued before BeginGraph, so the compute stream's waits on the copy
// stream precede the capture and a launch is ordered after them like any other op.
#include <cuda_runtime_api.h>

#include "engram/kernels/check.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

namespace engram::cuda {

// A captured graph and the generations of the scratch buffers its ops use (0: unused).
class CudaBackend::StepGraph final : public BackendGraph {
 public:
  StepGraph(cudaGraphExec_t exec, uint64_t gemm_gen, uint64_t attention_gen)
      : exec_(exec), gemm_gen_(gemm_gen), attention_gen_(attention_gen) {}
  ~StepGraph() override { (void)cudaGraphExecDestroy(exec_); }
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  cudaGraphExec_t exec() const { return exec_; }
  bool Current(const Scratch& gemm, const Scratch& attention) const {
    return (gemm_gen_ == 0 || gemm.generation == gemm_gen_) &&
           (attention_gen_ == 0 || attention.generation == attention_gen_);
  }

 private:
  cudaGraphExec_t exec_;
  uint64_t gemm_gen_, attention_gen_;
};

void CudaBackend::CheckNotCapturing(const char* call) const {
  ENGRAM_CHECK_MSG(!capturing_, "CudaBackend::%s while capturing a step graph", call);
}

void CudaBackend::BeginGraph() {
  ENGRAM_CHECK_MSG(!capturing_, "CudaBackend::BeginGraph while already capturing");
  ENGRAM_CUDA_CHECK(cudaStreamBeginCapture(compute_, cudaStreamCaptureModeRelaxed));
  capturing_ = true;
  capture_uses_gemm_ = capture_uses_attention_ = capture_grew_ = false;
}

std::unique_ptr<BackendGraph> CudaBackend::EndGraph(std::string* error) {
  ENGRAM_CHECK_MSG(capturing_, "CudaBackend::EndGraph without BeginGraph");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(compute_, &graph);
  if (end != cudaSuccess) {
    (void)cudaGetLastError();
    if (graph != nullptr) (void)cudaGraphDestroy(graph);
    *error = CudaErrorText("cudaStreamEndCapture", end);
    return nullptr;
  }
  if (capture_grew_) {
    ENGRAM_CUDA_CHECK(cudaGraphDestroy(graph));
    *error = "a scratch buffer grew during capture (run the shape once without a graph first)";
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  ENGRAM_CUDA_CHECK(cudaGraphDestroy(graph));
  if (inst != cudaSuccess) {
    (void)cudaGetLastError();
    *error = CudaErrorText("cudaGraphInstantiate", inst);
    return nullptr;
  }
  // A buffer that has grown at least once has a generation >= 1, so 0 can mean "unused".
  return std::make_unique<StepGraph>(exec, capture_uses_gemm_ ? gemm_x_.generation : 0,
                                     capture_uses_attention_ ? attention_ws_.generation : 0);
}

bool CudaBackend::LaunchGraph(const BackendGraph& graph) {
  CheckNotCapturing("LaunchGraph");
  const auto& g = dynamic_cast<const StepGraph&>(graph);
  if (!g.Current(gemm_x_, attention_ws_)) return false;
  ENGRAM_CUDA_CHECK(cudaGraphLaunch(g.exec(), compute_));
  return true;
}

}  // namespace engram::cuda
