// Host API of the CUDA kernels of the forward pass: launchers only (the kernels live in the .cu
// files named after each op). Every pointer in a params struct is a device pointer unless its
// comment says otherwise; every call is asynchronous on `stream` and checks its launch.
//
// The same ops as the Backend interface (backend.h) computes on the CPU, with the same
// semantics, so tests/cuda compares each with CpuBackend. Differences in layout, where a
// device-side layout is simpler: per-branch weight vectors are packed [M][D] instead of arrays of
// host pointers, and block tables are one [num_seqs][stride] array.
//
// Why <cuda_runtime_api.h> and not an opaque stream handle: it is a plain C header (no device
// code, clean under g++ -Wall -Wextra -Wpedantic), and whoever drives these ops must create
// streams, events and device buffers with the runtime anyway; an opaque handle would only move
// casts into every caller.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engram/kernels/dtype.h"

namespace engram::cuda {

// Per-device figures the launchers size their grids from; read once, kept by the caller.
struct DeviceInfo {
  int device = 0;
  int num_sms = 0;
  bool unified_addressing = false;  // pinned host memory is readable through its own pointer
};
DeviceInfo GetDeviceInfo(int device);

// y = RMSNorm(x) * weight per row of `dim` values; y may alias x. `branches` > 1 is the
// RmsNormBranches of the CPU backend: row r uses weight row r % branches of a [branches][dim]
// array (x is [rows / branches][branches][dim]).
void RmsNorm(const float* x, int64_t rows, int dim, const float* weight, int branches, float eps,
             float* y, cudaStream_t stream);

// In-place rotate-half RoPE of `heads` heads per row, row r at position pos[r].
void Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
          const float* inv_freq, cudaStream_t stream);

// out = silu(gate) * up over n values; out may alias gate or up.
void SwiGlu(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);

// out[r] = table[ids[r]] widened to float; table is f32 or bf16 [vocab][dim]. Ids must be in
// range (the model validates a step's tokens before it runs).
void Embedding(const void* table, DType dtype, int dim, const int32_t* ids, int64_t n, float* out,
               cudaStream_t stream);

// Packed Engram table rows (the table store's layout: d values in `dtype`, then d/32 ue8m0 scale
// bytes for fp8) to float. Output row r comes from packed row src_row[r] (nullptr: row r), so
// one gathered copy of a step's unique rows expands to every (token, head) that uses them.
struct DequantParams {
  const void* packed = nullptr;  // [num_packed_rows][packed_bytes]
  int64_t packed_bytes = 0;
  DType dtype = DType::kBF16;  // kF32, kBF16, kF16 or kF8E4M3
  int d = 0;
  const int32_t* src_row = nullptr;  // [rows] or nullptr
  int64_t rows = 0;
  float* out = nullptr;  // [rows][d]
};
void DequantRows(const DequantParams& p, cudaStream_t stream);

// bf16 copies of float activations for the cuBLASLt GEMM (round to nearest even).
void ConvertToBf16(const float* x, int64_t n, uint16_t* out, cudaStream_t stream);

// Paged attention over backend.h's KV layout [num_blocks][block_size][kv_heads][head_dim] for
// K and V: first stores this step's k, v rows at their positions, then causal GQA attention of
// every q row over its sequence's cache (the CPU Attention's semantics). Prefill chunks and
// decode rows mix freely in one batch. head_dim <= 256, num_heads / num_kv_heads <= 8.
struct PagedAttentionParams {
  int num_seqs = 0;
  int64_t num_rows = 0;                   // row_begin[num_seqs]
  const int32_t* row_begin = nullptr;     // [num_seqs + 1]
  const int64_t* pos_begin = nullptr;     // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs][block_table_stride]
  int block_table_stride = 0;
  float* k_cache = nullptr;
  float* v_cache = nullptr;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int num_heads = 0;
  const float* q = nullptr;  // [num_rows][num_heads][head_dim]
  const float* k = nullptr;  // [num_rows][num_kv_heads][head_dim]
  const float* v = nullptr;
  float* out = nullptr;  // [num_rows][num_heads][head_dim]
  // Flash-decoding split of each row's positions over `num_splits` blocks, merged afterwards;
  // pick it with ChooseAttentionSplits. With num_splits > 1, `max_context` bounds pos + 1 over
  // the rows (the engine knows it on the host) and `workspace` holds
  // PagedAttentionWorkspaceBytes.
  int num_splits = 1;
  int64_t max_context = 0;
  void* workspace = nullptr;
};
// Enough splits to give every SM two blocks when the batch alone does not, and none that would
// hold fewer than 256 positions; `max_context` bounds pos + 1 over the step's rows.
int ChooseAttentionSplits(int64_t num_rows, int num_kv_heads, int64_t max_context, int num_sms);
size_t PagedAttentionWorkspaceBytes(int64_t num_rows, int num_heads, int head_dim, int num_splits);
void PagedAttention(const PagedAttentionParams& p, cudaStream_t stream);

// The Engram gate of DESIGN §2.1.6 fused with the short conv's per-branch RMSNorm (§2.1.7):
// per (row, branch) alpha = gate(RMSNorm_q(h), RMSNorm_k(k)), u = alpha * v, z = RMSNorm_m(u).
struct EngramGateParams {
  int64_t rows = 0;
  int hidden = 0;                     // D
  int branches = 0;                   // M
  const float* hidden_in = nullptr;   // [rows][M][D]
  const float* keys = nullptr;        // [M][rows][D]
  const float* value = nullptr;       // [rows][D]
  const float* key_norm = nullptr;    // [M][D] (norm1; eps = float32 machine epsilon)
  const float* query_norm = nullptr;  // [M][D] (norm2; same eps)
  const float* conv_norm = nullptr;   // [M][D] (short_conv.norms)
  float conv_eps = 1e-5f;
  float* gates = nullptr;  // [rows][M]
  float* gated = nullptr;  // [rows][M][D] u
  float* z = nullptr;      // [rows][M][D]
};
void EngramGate(const EngramGateParams& p, cudaStream_t stream);

// The causal depthwise short conv + SiLU + gate residual (§2.1.7-8): y = u + SiLU(conv(z)).
// Earlier inputs come through tap pointers exactly as in backend.h's ShortConvParams (this
// step's z rows or each sequence's history, both in device memory; nullptr = zero). Writes y to
// `out` when set, and adds it to `residual` (the hidden state, [rows][C]) when set.
struct ShortConvParams {
  int64_t rows = 0;
  int channels = 0;                    // C = M * D
  int kernel = 0;                      // w
  const float* weight = nullptr;       // [C][w]
  const float* z = nullptr;            // [rows][C]
  const float* const* taps = nullptr;  // [rows][w-1] device pointers
  const float* gated = nullptr;        // [rows][C] u
  float* out = nullptr;                // [rows][C] or nullptr
  float* residual = nullptr;           // [rows][C] or nullptr
};
void ShortConv(const ShortConvParams& p, cudaStream_t stream);

// The multi-branch residual stream h [rows][branches][dim] (backend.h's branch ops):
// h[r][m] = x[r]; x[r] = mean over m of h[r][m]; h[r][m] += delta[r].
void BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h,
                       cudaStream_t stream);
void BranchMean(const float* h, int64_t rows, int branches, int dim, float* x, cudaStream_t stream);
void AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h,
                   cudaStream_t stream);
// out[i] = x[index[i]] for rows of `dim` floats (index in device memory).
void GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out,
                cudaStream_t stream);
// Product-key memory (DESIGN §2.4 steps 3-7; product_key.cu), backend.h's ops of the same names
// with the same semantics: every value is computed by product_key_math.h's row math, rounding for
// rounding as the CPU does, so the scores, the top-k choices and the weighted sums are bitwise
// the CPU's; only expf (the softmax weights, the sigmoid) differs by its few ulps.
//
// scores[r][t][s][i] = query[r][t*k_dim + s*k_dim/2 ..] . keys[t][s][i], ascending in float32.
struct ProductKeyScoresParams {
  int64_t rows = 0;
  int heads = 0;
  int k_dim = 0;  // even
  int64_t n_keys = 0;
  const float* query = nullptr;  // [rows][heads*k_dim]
  const float* keys = nullptr;   // [heads][2][n_keys][k_dim/2]
  float* scores = nullptr;       // [rows][heads][2][n_keys]
};
void ProductKeyScores(const ProductKeyScoresParams& p, cudaStream_t stream);

// The k largest of each row of n values (0 < k <= n < 2^31), descending, ties to the lower
// index; NaN ranks above +inf and -0 equals +0 (product_key_math.h's order).
void RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values, int32_t* index,
             cudaStream_t stream);

// Per group the k best cells of the k x k grid of its two halves' top-k lists, best first
// (ties: the lower flat cell), and the float32 softmax of their scores. knn <= 46340.
struct ProductKeyCandidatesParams {
  int64_t groups = 0;
  int knn = 0;
  int64_t n_keys = 0;
  const float* best_scores = nullptr;  // [groups][2][knn]
  const int32_t* best_ids = nullptr;   // [groups][2][knn]
  float* weights = nullptr;            // [groups][knn]
  int64_t* indices = nullptr;          // [groups][knn]
};
void ProductKeyCandidates(const ProductKeyCandidatesParams& p, cudaStream_t stream);

// out[r] = sum over j < per_row, in order, of weights[r][j] * packed row rows_idx[r][j] as float
// (DequantParams's layout and dtypes).
struct WeightedRowSumParams {
  int64_t rows = 0;
  int per_row = 0;
  const void* packed = nullptr;  // [*][packed_bytes]
  int64_t packed_bytes = 0;
  DType dtype = DType::kF32;
  int d = 0;
  const int64_t* rows_idx = nullptr;  // [rows][per_row]
  const float* weights = nullptr;     // [rows][per_row]
  float* out = nullptr;               // [rows][d]
};
void WeightedRowSum(const WeightedRowSumParams& p, cudaStream_t stream);

// x[r][i] *= sigmoid(logit[r]) for rows of `dim` values.
void SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x, cudaStream_t stream);

// dst[r][0..dim) = src[r] for every r whose dst[r] is not nullptr (dst: a device array of
// device pointers). Launched after ShortConv to update each sequence's history ring.
void StoreRows(const float* src, int64_t rows, int dim, float* const* dst, cudaStream_t stream);

}  // namespace engram::cuda
