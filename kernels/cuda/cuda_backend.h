// The CUDA implementation of backend.h's Backend: device memory behind a caching allocator,
// host -> device copies through pinned staging on a copy stream, and every op as one launch (or
// a cuBLASLt GEMM) of ops.h on a single compute stream. Plain C++ (the host compiler builds it);
// only the launchers in the .cu files contain device code.
//
// Streams. Every op runs on `compute_` in call order, which is all the ordering the ops need
// among themselves. Uploads are copied on `copy_`, so the DMA engine performs them while the
// compute stream runs earlier ops (backend.h: an Upload's destination is not in use by any op
// since the last sync point, so nothing needs to wait for the compute stream); the compute
// stream then waits on an event recorded after each copy, so a later op sees the data.
// FetchPackedRows (the zero-copy gather and the hot-row cache) runs on the copy stream too,
// behind the upload of its ids, under the same contract.

// Host tables (OpenHostTable). A table is the RAM tier's own copy of an Engram table, pinned in
// place (cudaHostRegister) and read by kernels over PCIe; with a device row cache in front of it
// when the caller grants one. Tables are owned by the caller and must be destroyed before the
// backend (see ~CudaBackend).
//
// Thread: like every backend, driven by one thread. The CUDA runtime's current device is per
// thread: device 0 is every thread's default; a backend on another device must be driven from
// a thread that called cudaSetDevice(device()) (Create does so for the creating thread).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engram/kernels/backend.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"

namespace engram::cuda {

class CudaBackend final : public Backend {
 public:
  // The first pinned staging arena; it grows (doubling) when a step uploads more.
  static constexpr size_t kInitialStagingBytes = size_t{1} << 20;
  // Uploads larger than this bypass staging (see Upload): load-time bulk copies would otherwise
  // leave an arena of their size pinned for the life of the process.
  static constexpr size_t kMaxStagedUploadBytes = size_t{64} << 20;

  // Nullptr with *error set when the device cannot be used (cudaSetDevice fails, cuBLASLt does
  // not load, a stream cannot be created).
  static std::unique_ptr<CudaBackend> Create(int device, std::string* error);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string_view name() const override { return "cuda"; }
  // "NVIDIA H100 80GB HBM3 (device 0, sm_90, 132 SMs, 79.1 GiB), cuBLASLt <path>".
  const std::string& description() const { return description_; }
  int device() const { return info_.device; }
  const DeviceInfo& device_info() const { return info_; }
  // The stream every op runs on, for code that launches ops.h kernels next to the backend's.
  cudaStream_t compute_stream() const { return compute_; }
  // Bytes of freed blocks the allocator keeps for reuse (tests, the start-up log).
  size_t cached_bytes() const { return cached_bytes_; }

  // --- memory -------------------------------------------------------------------------------
  bool host_memory() const override { return false; }
  void* Allocate(size_t bytes) override;
  void Free(void* p) override;
  void Upload(void* dst, const void* src, size_t bytes) override;
  void Download(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override;
  // cudaMemGetInfo's free plus the allocator's cached blocks (Allocate releases them to the
  // driver before it gives up), and the device's total.
  std::pair<size_t, size_t> FreeMemory() const override;
  Matrix Resident(const Matrix& host) override;
  const float* Resident(const float* host, int64_t n) override;

  // --- ops ----------------------------------------------------------------------------------
  void Linear(const float* x, int64_t m, const Matrix& w, const float* bias, float* y) override;
  void RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
               float* y) override;
  void Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
            const float* inv_freq) override;
  void SwiGlu(const float* gate, const float* up, int64_t n, float* out) override;
  void Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) override;
  void Attention(const AttentionBatch& batch, const KvLayer& kv, const float* q, const float* k,
                 const float* v, int num_heads, float* out) override;
  // Backend's params structs, not their ops.h namesakes of this namespace.
  void EngramGate(const engram::EngramGateParams& p) override;
  void RmsNormBranches(const float* x, int64_t rows, int branches, int dim, const float* weights,
                       float eps, float* y) override;
  void ShortConv(const engram::ShortConvParams& p) override;
  void BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h) override;
  void BranchMean(const float* h, int64_t rows, int branches, int dim, float* x) override;
  void AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h) override;
  void GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out) override;

  // --- product-key memory (DESIGN §2.4; product_key.cu) ---------------------------------------
  void ProductKeyScores(const engram::ProductKeyScoresParams& p) override;
  void RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values,
               int32_t* index) override;
  void ProductKeyCandidates(const engram::ProductKeyCandidatesParams& p) override;
  // dtype kF32, kBF16, kF16 or kF8E4M3, as DequantRows.
  void WeightedRowSum(const engram::WeightedRowSumParams& p) override;
  void SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x) override;

  // --- Engram rows (DESIGN §3) ----------------------------------------------------------------
  // Ways of a host table's device row cache (row_cache.h): the host RowCache's associativity.
  static constexpr int kRowCacheWays = 8;
  // Device bytes a cached row costs besides its packed bytes: its tag and its stamp.
  static constexpr int64_t kRowCacheOverheadBytes = sizeof(int64_t) + sizeof(unsigned);

  // dtype kF32, kBF16, kF16 or kF8E4M3 (dequant.cu's set).
  void DequantRows(const void* packed, int64_t packed_bytes, DType dtype, int d,
                   const int32_t* src_row, int64_t rows, float* out) override;
  // Pins `table.data` in place and, when cache_bytes holds at least one set of kRowCacheWays
  // rows (overhead included), puts a device row cache of at most cache_bytes in front of it (no
  // more rows than the table has, rounded up to a whole set).
  // Nullptr with *error set when the memory cannot be registered or the cache not allocated.
  std::unique_ptr<BackendTable> OpenHostTable(const PackedTable& table, size_t cache_bytes,
                                              int max_rows_per_call, std::string* error) override;
  void FetchPackedRows(BackendTable& table, const int64_t* ids, int64_t n, void* out) override;
  void Sample(const SampleBatch& b) override;

  // --- step graphs ----------------------------------------------------------------------------
  // CUDA graphs captured from the compute stream (relaxed mode). A graph keeps the addresses of
  // the scratch buffers its ops used; when one of them has grown since, LaunchGraph says the
  // graph is stale instead of launching it.
  bool SupportsGraphs() const override { return true; }
  void BeginGraph() override;
  std::unique_ptr<BackendGraph> EndGraph(std::string* error) override;
  bool LaunchGraph(const BackendGraph& graph) override;

 private:
  // A pinned host arena, bump-allocated between sync points.
  struct Arena {
    void* data = nullptr;
    size_t bytes = 0;
    size_t used = 0;
  };
  // A grow-only device buffer for an op's temporaries (bf16 activations, attention partials).
  struct Scratch {
    void* data = nullptr;
    size_t bytes = 0;
    uint64_t generation = 0;  // bumped whenever `data` moves (see LaunchGraph)
  };
  class StepGraph;

  // OpenHostTable's tables (defined in cuda_backend.cc).
  class HostTable;

  CudaBackend() = default;

  void* Reserve(Scratch& s, size_t bytes);
  // Memory calls are not stream ops a graph could hold: they abort while capturing.
  void CheckNotCapturing(const char* call) const;
  void* StagingSlot(size_t bytes);
  // After both streams are idle: pinned arenas retired mid-step are freed and the current one
  // starts over.
  void ResetStaging();
  // Returns every cached block to the driver.
  void ReleaseCache();
  void* AllocateResident(size_t bytes);
  // At a sync point (both streams idle): publishes the row counters of every table fetched from
  // since the last one, for BackendTable::stats() on other threads.
  void RefreshTableStats();

  DeviceInfo info_;
  std::string description_;
  std::unique_ptr<CublasLtGemm> gemm_;
  cudaStream_t compute_ = nullptr;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t copy_done_ = nullptr;  // recorded after each staged copy

  // Caching allocator: live blocks with their size class, and freed blocks by size class.
  std::unordered_map<void*, size_t> live_;
  std::multimap<size_t, void*> cached_;
  size_t cached_bytes_ = 0;

  std::vector<void*> resident_;  // weights and vectors, freed only by the destructor
  Scratch gemm_x_;               // bf16 activations of Linear
  Scratch attention_ws_;         // flash-decoding partials of Attention
  Scratch sample_ws_;            // Sample's sort buffers

  // While capturing: the scratch buffers the captured ops use, and whether one had to grow
  // (its old block went back to the allocator, so the graph may not be launched).
  bool capturing_ = false;
  bool capture_uses_gemm_ = false, capture_uses_attention_ = false, capture_grew_ = false;

  Arena staging_;
  std::vector<void*> retired_staging_;  // full arenas a copy in flight may still read

  // The open host tables; each removes itself when destroyed.
  std::vector<HostTable*> tables_;
};

}  // namespace engram::cuda
