// The contract every compute backend implements (DESIGN §4). Calls are per op over whole
// batches, never per element, so a virtual call costs nothing measurable. Buffers are float32
// activations in the backend's memory; weights are f32 or bf16 matrices stored [out, in] as in
// Hugging Face Linear layers. Implementations: cpu/ (always), cuda/ (when built and a device is
// present). A backend is not thread-safe: one engine thread drives it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "engram/kernels/dtype.h"

namespace engram {

// A row-major weight matrix [rows][cols] (rows = output features).
struct Matrix {
  const void* data = nullptr;
  DType dtype = DType::kF32;  // kF32 or kBF16
  int64_t rows = 0;
  int64_t cols = 0;
};

// The step's sequences as the attention op sees them: rows [row_begin[s], row_begin[s+1]) of q
// belong to sequence s and sit at positions pos_begin[s], pos_begin[s] + 1, ...
struct AttentionBatch {
  int num_seqs = 0;
  const int32_t* row_begin = nullptr;            // num_seqs + 1 prefix sums
  const int64_t* pos_begin = nullptr;            // num_seqs
  const int32_t* const* block_tables = nullptr;  // num_seqs tables of KV block ids
};

// One layer's paged KV cache: [num_blocks][block_size][num_kv_heads][head_dim] for K and V.
struct KvLayer {
  float* k = nullptr;
  float* v = nullptr;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// The Engram gate + short conv of one layer (DESIGN §2.1.6-8) for a step's rows.
struct EngramGateParams {
  int64_t rows = 0;
  int hidden = 0;                            // D
  int branches = 0;                          // M
  const float* hidden_in = nullptr;          // [rows][M][D] hidden state entering the module
  const float* keys = nullptr;               // [M][rows][D] key projections k_m = W_K[m] e + b_K[m]
  const float* value = nullptr;              // [rows][D]   value projection
  const float* const* key_norm = nullptr;    // M weights [D] (norm1)
  const float* const* query_norm = nullptr;  // M weights [D] (norm2)
  float* gates = nullptr;                    // out [rows][M]
  float* gated = nullptr;                    // out u = alpha * v, [rows][M][D]
};

// The causal depthwise short conv over time (DESIGN §2.1.7) on C = M*D channels, then
// out = u + SiLU(y). Inputs at earlier times arrive as row pointers so that one op serves
// prefill (earlier rows of the same step) and decode (rows kept in each sequence's history).
struct ShortConvParams {
  int64_t rows = 0;
  int channels = 0;                    // C = M * D
  int kernel = 0;                      // w
  const float* weight = nullptr;       // [C][w]
  const float* z = nullptr;            // [rows][C] normalised inputs at time t
  const float* const* taps = nullptr;  // [rows][w-1]: z at t-(w-1-i)*delta, nullptr = zero
  const float* gated = nullptr;        // [rows][C] u
  float* out = nullptr;                // [rows][C]
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // y[m][n] = sum_k x[m][k] * w[n][k] (+ bias[n] when bias != nullptr).
  virtual void Linear(const float* x, int64_t m, const Matrix& w, const float* bias, float* y) = 0;
  // y = RMSNorm(x) * weight per row of `dim` values. y may alias x.
  virtual void RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
                       float* y) = 0;
  // In-place rotate-half RoPE of `heads` heads per row at positions pos[row].
  virtual void Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
                    const float* inv_freq) = 0;
  // out = silu(gate) * up, elementwise over n values.
  virtual void SwiGlu(const float* gate, const float* up, int64_t n, float* out) = 0;
  // Embedding rows of a [vocab][dim] matrix.
  virtual void Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) = 0;
  // Stores this step's k, v rows ([rows][kv_heads*head_dim]) at their positions, then computes
  // causal GQA attention of q ([rows][heads*head_dim]) over each sequence's cache.
  virtual void Attention(const AttentionBatch& batch, const KvLayer& kv, const float* q,
                         const float* k, const float* v, int num_heads, float* out) = 0;
  virtual void EngramGate(const EngramGateParams& p) = 0;
  // Per-branch RMSNorm of [rows][M][D] rows with M weight vectors.
  virtual void RmsNormBranches(const float* x, int64_t rows, int branches, int dim,
                               const float* const* weights, float eps, float* y) = 0;
  virtual void ShortConv(const ShortConvParams& p) = 0;
};

// Why the registry chose what it chose, for the start-up log.
struct BackendChoice {
  std::unique_ptr<Backend> backend;
  std::string reason;
};

// `threads` <= 0 means one per core. Picks CUDA when built and a device is present, else CPU.
BackendChoice CreateBackend(int threads);

}  // namespace engram
