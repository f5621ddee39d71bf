// The CPU backend: the reference every other backend is tested against, parallelised over the
// thread pool where it pays (matmuls, attention). Float32 activations, f32 or bf16 weights.
#pragma once

#include "engram/kernels/backend.h"
#include "engram/kernels/op_recorder.h"
#include "engram/kernels/thread_pool.h"

namespace engram {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}
  std::string_view name() const override { return "cpu"; }
  int threads() const { return pool_.size(); }

  bool host_memory() const override { return true; }
  void* Allocate(size_t bytes) override;
  void Free(void* p) override;
  void Upload(void* dst, const void* src, size_t bytes) override;
  void Download(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override { recorder_.CheckNotRecording("Synchronize"); }
  Matrix Resident(const Matrix& host) override { return host; }
  const float* Resident(const float* host, int64_t) override { return host; }

  void Linear(const float* x, int64_t m, const Matrix& w, const float* bias, float* y) override;
  void RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
               float* y) override;
  void Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
            const float* inv_freq) override;
  void SwiGlu(const float* gate, const float* up, int64_t n, float* out) override;
  void Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) override;
  void Attention(const AttentionBatch& batch, const KvLayer& kv, const float* q, const float* k,
                 const float* v, int num_heads, float* out) override;
  void EngramGate(const EngramGateParams& p) override;
  void RmsNormBranches(const float* x, int64_t rows, int branches, int dim, const float* weights,
                       float eps, float* y) override;
  void ShortConv(const ShortConvParams& p) override;
  void BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h) override;
  void BranchMean(const float* h, int64_t rows, int branches, int dim, float* x) override;
  void AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h) override;
  void GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out) override;
  // Product-key memory (cpu/product_key_ops.cc, the scores in cpu/product_key_scores.cc).
  void ProductKeyScores(const ProductKeyScoresParams& p) override;
  void RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values,
               int32_t* index) override;
  void ProductKeyCandidates(const ProductKeyCandidatesParams& p) override;
  void WeightedRowSum(const WeightedRowSumParams& p) override;
  void SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x) override;
  void DequantRows(const void* packed, int64_t packed_bytes, DType dtype, int d,
                   const int32_t* src_row, int64_t rows, float* out) override;
  // Host tables are already this backend's memory: no cache, rows copied on request.
  std::unique_ptr<BackendTable> OpenHostTable(const PackedTable& table, size_t cache_bytes,
                                              int max_rows_per_call, std::string* error) override;
  void FetchPackedRows(BackendTable& table, const int64_t* ids, int64_t n, void* out) override;
  void Sample(const SampleBatch& b) override;

  // Graphs as recorded op lists (op_recorder.h): no faster here, but they let the CPU run the
  // model's graph path, which a device needs, and check it against the ops run directly.
  bool SupportsGraphs() const override { return true; }
  void BeginGraph() override { recorder_.Begin(); }
  std::unique_ptr<BackendGraph> EndGraph(std::string*) override { return recorder_.End(); }
  bool LaunchGraph(const BackendGraph& graph) override {
    OpRecorder::Launch(graph);
    return true;
  }

 private:
  ThreadPool pool_;
  OpRecorder recorder_;
};

}  // namespace engram
