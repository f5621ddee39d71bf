// The contract every compute backend implements (DESIGN §4). Calls are per op over whole
// batches, never per element, so a virtual call costs nothing measurable. Implementations: cpu/
// (always), cuda/ (when built and a device is present). A backend is not thread-safe: one engine
// thread drives it.
//
// Memory. Every pointer an op takes lives in the backend's memory: activations, weights, the KV
// cache, and the small per-step arrays (token ids, positions, block tables, tap pointers). The
// caller obtains it with Allocate, fills it with Upload, and reads results with Download. On the
// CPU the backend's memory is the host's (host_memory() is true), so the model may also hand it
// host pointers directly, e.g. the mmap'd weights; a device backend copies what it needs once
// (Resident). Activations are float32; weights are f32 or bf16 matrices stored [out, in] as in
// Hugging Face Linear layers. Ops run in call order; Download waits for all of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "engram/kernels/dtype.h"
#include "engram/kernels/sampling_math.h"

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
  int64_t num_rows = 0;                   // row_begin[num_seqs]
  const int32_t* row_begin = nullptr;     // [num_seqs + 1] prefix sums
  const int64_t* pos_begin = nullptr;     // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs][block_table_stride] KV block ids
  int block_table_stride = 0;
  // At least the largest pos + 1 of any row: a host value that sizes the work. A step graph
  // passes its context bucket, so one recorded launch serves every step up to that length.
  int64_t max_context = 0;
};

// One layer's paged KV cache: [num_blocks][block_size][num_kv_heads][head_dim] for K and V.
struct KvLayer {
  float* k = nullptr;
  float* v = nullptr;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// The Engram gate of one layer (DESIGN §2.1.6) for a step's rows, optionally fused with the
// short conv's per-branch RMSNorm (§2.1.7) of its output.
struct EngramGateParams {
  int64_t rows = 0;
  int hidden = 0;                     // D
  int branches = 0;                   // M
  const float* hidden_in = nullptr;   // [rows][M][D] hidden state entering the module
  const float* keys = nullptr;        // [M][rows][D] key projections k_m = W_K[m] e + b_K[m]
  const float* value = nullptr;       // [rows][D]   value projection
  const float* key_norm = nullptr;    // [M][D] (norm1)
  const float* query_norm = nullptr;  // [M][D] (norm2)
  float* gates = nullptr;             // out [rows][M]
  float* gated = nullptr;             // out u = alpha * v, [rows][M][D]
  // When z is set: z = RMSNorm(u) per branch with the [M][D] weights conv_norm and conv_eps.
  const float* conv_norm = nullptr;
  float conv_eps = 1e-5f;
  float* z = nullptr;  // out [rows][M][D], or nullptr
};

// The causal depthwise short conv over time (DESIGN §2.1.7) on C = M*D channels, then
// y = u + SiLU(conv). Inputs at earlier times arrive as row pointers so that one op serves
// prefill (earlier rows of the same step) and decode (rows kept in each sequence's history).
struct ShortConvParams {
  int64_t rows = 0;
  int channels = 0;                    // C = M * D
  int kernel = 0;                      // w
  const float* weight = nullptr;       // [C][w]
  const float* z = nullptr;            // [rows][C] normalised inputs at time t
  const float* const* taps = nullptr;  // [rows][w-1]: z at t-(w-1-i)*delta, nullptr = zero
  const float* gated = nullptr;        // [rows][C] u
  float* out = nullptr;                // [rows][C] y, or nullptr
  float* residual = nullptr;           // [rows][C] += y, or nullptr
  // After every tap has been read: z row r is copied to z_store[r] unless that is nullptr
  // ([rows] pointers, or nullptr for none). This is how a sequence's history ring is updated
  // without a race against the taps that read it.
  float* const* z_store = nullptr;
};

// Product-key memory (DESIGN §2.4 steps 3-7): the row chooser of a memory layer whose rows are
// picked by the hidden state. Backend's product-key ops are the chooser's parts and the read of
// its rows, written once as row math (product_key_math.h) that the CPU and CUDA backends both call.
//
// Sub-key scores (step 3): for every row r, head t < heads and half s < 2,
//   scores[r][t][s][i] = dot(query[r][t*k_dim + s*k_dim/2 .. +k_dim/2), keys[(t*2+s)*n_keys + i])
// for i < n_keys, summed in ascending index order in float32. No scaling, no normalisation.
struct ProductKeyScoresParams {
  int64_t rows = 0;
  int heads = 0;                 // H
  int k_dim = 0;                 // even; each half is k_dim/2 wide
  int64_t n_keys = 0;            // n
  const float* query = nullptr;  // [rows][H*k_dim]
  const float* keys = nullptr;   // [H][2][n_keys][k_dim/2]
  float* scores = nullptr;       // out [rows][H][2][n_keys]
};

// The best k of each query head's k*k candidates (steps 5-6): for each group g (a (row, head)
// pair) the two halves' top-k lists span a k x k grid, cell (a, b) scoring
// best_scores[g][0][a] + best_scores[g][1][b] and naming value row
// best_ids[g][0][a] * n_keys + best_ids[g][1][b]. The k best cells (ties: the lower flat cell
// a*k + b first), best first, become `indices`; `weights` is the float32 softmax of their scores.
struct ProductKeyCandidatesParams {
  int64_t groups = 0;                  // rows * heads
  int knn = 0;                         // k
  int64_t n_keys = 0;                  // n
  const float* best_scores = nullptr;  // [groups][2][k], each half descending
  const int32_t* best_ids = nullptr;   // [groups][2][k]
  float* weights = nullptr;            // out [groups][k]
  int64_t* indices = nullptr;          // out [groups][k]
};

// The weighted row sum of packed value rows (step 7, an "embedding bag" in sum mode):
//   out[r] = sum over j < per_row of weights[r*per_row + j] * row(rows_idx[r*per_row + j])
// with row(i) the float values of packed row i of `packed` ([*][packed_bytes]: d values in
// `dtype`, then d/32 ue8m0 scale bytes for fp8). Accumulated in float32 in j order, so a row's
// result never depends on the other rows of the call (batch invariance).
struct WeightedRowSumParams {
  int64_t rows = 0;
  int per_row = 0;  // H * k
  const void* packed = nullptr;
  int64_t packed_bytes = 0;
  DType dtype = DType::kF32;
  int d = 0;
  const int64_t* rows_idx = nullptr;  // [rows][per_row] rows of `packed`
  const float* weights = nullptr;     // [rows][per_row]
  float* out = nullptr;               // [rows][d]
};

// An Engram table in host memory as packed rows (table_store.h's layout: d values in `dtype`,
// then d/32 ue8m0 scale bytes for fp8), which a backend may read rows from itself.
struct PackedTable {
  const void* data = nullptr;  // [rows][packed_bytes], host memory that outlives the table handle
  int64_t rows = 0;
  int64_t packed_bytes = 0;
  DType dtype = DType::kBF16;
  int d = 0;
};

// Counters of a backend table's row reads, since it was opened.
struct BackendTableStats {
  uint64_t lookups = 0;      // rows asked for (distinct per call)
  uint64_t cache_hits = 0;   // served from the backend's own row cache
  uint64_t transferred = 0;  // rows read from host memory (cache misses)
};

// A host table opened by a backend (Backend::OpenHostTable): a device registers (pins) the
// memory and may keep a hot-row cache of it in its own memory.
class BackendTable {
 public:
  virtual ~BackendTable() = default;
  // As of the backend's last sync point (Download/Synchronize); safe from any thread.
  virtual BackendTableStats stats() const = 0;
};

// One step's token sampling on the backend, with the engine sampler's semantics
// (sample_logits.h), so that only the tokens and the advanced random states come back to the
// host instead of every logit. The seen and count lists are CSR arrays over the rows.
struct SampleBatch {
  int rows = 0;
  int vocab = 0;
  float* logits = nullptr;                // [rows][vocab], penalised in place
  const SamplingRow* params = nullptr;    // [rows]
  const int32_t* seen_offsets = nullptr;  // [rows + 1]: distinct prompt + output tokens
  const int32_t* seen_tokens = nullptr;
  const int32_t* count_offsets = nullptr;  // [rows + 1]: distinct output tokens and counts
  const int32_t* count_tokens = nullptr;
  const int32_t* count_values = nullptr;
  Xoshiro256* rng = nullptr;  // [rows], advanced once per non-greedy row
  int32_t* tokens = nullptr;  // [rows] out
  bool all_greedy = false;    // every row has temperature <= 0 (lets a device skip its sort)
};

// A recorded run of ops (Backend::BeginGraph), replayed as one launch: a CUDA graph on a device.
class BackendGraph {
 public:
  virtual ~BackendGraph() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // --- memory -------------------------------------------------------------------------------
  // True when the backend computes on host memory, so host pointers may be passed to ops.
  virtual bool host_memory() const = 0;
  // Uninitialised memory for `bytes` bytes, aligned to 256 bytes; never nullptr (aborts when
  // out of memory: callers size their pools from FreeMemory first).
  virtual void* Allocate(size_t bytes) = 0;
  virtual void Free(void* p) = 0;
  // Host → backend copy, ordered before every later op; `src` may be reused once this returns.
  // `dst` must not be touched by any op issued since the last Download or Synchronize: a device
  // backend copies on another stream while those ops run (this is how a step's Engram rows
  // arrive during the layers before them), so a destination still in use would be overwritten.
  virtual void Upload(void* dst, const void* src, size_t bytes) = 0;
  // Backend → host copy after every earlier op has finished; returns when `dst` holds the data.
  virtual void Download(void* dst, const void* src, size_t bytes) = 0;
  // Waits for every earlier op (the error path of a step that did not reach its Download).
  virtual void Synchronize() = 0;
  // Bytes the backend could still allocate, and its total; 0, 0 for host memory (the caller
  // then sizes from its own flags).
  virtual std::pair<size_t, size_t> FreeMemory() const { return {0, 0}; }
  // A weight matrix in the backend's memory for the backend's whole life: the CPU returns
  // `host` unchanged (the mmap'd file); a device backend copies it once, possibly into the
  // dtype its GEMM wants.
  virtual Matrix Resident(const Matrix& host) = 0;
  // The same for a float vector of n values.
  virtual const float* Resident(const float* host, int64_t n) = 0;

  // --- ops ----------------------------------------------------------------------------------
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
  // Embedding rows of a [vocab][dim] matrix. Ids must be in range (callers validate).
  virtual void Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) = 0;
  // Stores this step's k, v rows ([rows][kv_heads*head_dim]) at their positions, then computes
  // causal GQA attention of q ([rows][heads*head_dim]) over each sequence's cache.
  virtual void Attention(const AttentionBatch& batch, const KvLayer& kv, const float* q,
                         const float* k, const float* v, int num_heads, float* out) = 0;
  virtual void EngramGate(const EngramGateParams& p) = 0;
  // Per-branch RMSNorm of [rows][M][D] rows with the M weight rows of `weights` [M][D].
  virtual void RmsNormBranches(const float* x, int64_t rows, int branches, int dim,
                               const float* weights, float eps, float* y) = 0;
  virtual void ShortConv(const ShortConvParams& p) = 0;

  // The multi-branch residual stream h [rows][M][D] (DESIGN §2.1.9):
  // h[r][m] = x[r] for every branch.
  virtual void BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h) = 0;
  // x[r] = mean over m of h[r][m] (a plain copy when M == 1).
  virtual void BranchMean(const float* h, int64_t rows, int branches, int dim, float* x) = 0;
  // h[r][m] += delta[r] for every branch.
  virtual void AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h) = 0;
  // out[i] = x[index[i]] for rows of `dim` values.
  virtual void GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out) = 0;

  // --- product-key memory (DESIGN §2.4) ------------------------------------------------------
  virtual void ProductKeyScores(const ProductKeyScoresParams& p) = 0;
  // The k largest of each row of n values, descending (ties: the lower index first):
  // values[r][j], index[r][j] for j < k <= n.
  virtual void RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values,
                       int32_t* index) = 0;
  virtual void ProductKeyCandidates(const ProductKeyCandidatesParams& p) = 0;
  virtual void WeightedRowSum(const WeightedRowSumParams& p) = 0;
  // x[r][·] *= sigmoid(logit[r]) for rows of `dim` values (the memory's optional output gate).
  virtual void SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x) = 0;

  // --- Engram rows read by the backend (DESIGN §3) ------------------------------------------
  // out[r] = the float values of packed row src_row[r] of `packed` ([*][packed_bytes] in
  // backend memory), for r < rows: one copy of a step's distinct rows expands to every
  // (token, head) that uses them.
  virtual void DequantRows(const void* packed, int64_t packed_bytes, DType dtype, int d,
                           const int32_t* src_row, int64_t rows, float* out) = 0;
  // Opens a host table for FetchPackedRows, with a row cache of up to `cache_bytes` in the
  // backend's memory (0: none). Returns nullptr with *error set when this backend cannot read
  // host tables itself; callers then gather rows on the CPU and Upload them.
  virtual std::unique_ptr<BackendTable> OpenHostTable(const PackedTable& table, size_t cache_bytes,
                                                      int max_rows_per_call,
                                                      std::string* error) = 0;
  // out[i] = packed row ids[i] of `table` for n <= max_rows_per_call distinct in-range ids
  // (ids and out in backend memory). Like Upload, a device may run it beside the ops before it,
  // so `out` must not be touched by any op since the last sync point either.
  virtual void FetchPackedRows(BackendTable& table, const int64_t* ids, int64_t n, void* out) = 0;

  // --- sampling -----------------------------------------------------------------------------
  virtual void Sample(const SampleBatch& b) = 0;

  // --- step graphs --------------------------------------------------------------------------
  // Between BeginGraph and EndGraph the ops above (Linear .. DequantRows and the product-key
  // ops) are recorded instead of run; nothing else may be called. LaunchGraph replays them in order
  // with the pointers and sizes they were recorded with, reading whatever those pointers hold at
  // launch time, so a caller keeps every address fixed and changes only the data behind it
  // (uploaded as usual before the launch). On a device this turns a step's hundreds of launches
  // into one.
  virtual bool SupportsGraphs() const { return false; }
  virtual void BeginGraph();
  // Nullptr with *error set when the recording cannot be replayed; its ops did not run.
  virtual std::unique_ptr<BackendGraph> EndGraph(std::string* error);
  // False, with nothing run, when the graph went stale (memory the backend manages itself for
  // its ops moved since it was recorded): the caller runs the ops directly and records anew.
  virtual bool LaunchGraph(const BackendGraph& graph);
};

// Backend memory owned like a unique_ptr. The backend must outlive it.
class BackendBuffer {
 public:
  BackendBuffer() = default;
  BackendBuffer(Backend* backend, size_t bytes)
      : backend_(backend), data_(bytes > 0 ? backend->Allocate(bytes) : nullptr), bytes_(bytes) {}
  BackendBuffer(BackendBuffer&& o) noexcept { *this = std::move(o); }
  BackendBuffer& operator=(BackendBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      backend_ = std::exchange(o.backend_, nullptr);
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  BackendBuffer(const BackendBuffer&) = delete;
  BackendBuffer& operator=(const BackendBuffer&) = delete;
  ~BackendBuffer() { Reset(); }

  void Reset() {
    if (data_ != nullptr) backend_->Free(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  // Reallocates (contents lost) when smaller than `bytes`.
  void Reserve(Backend* backend, size_t bytes) {
    if (bytes <= bytes_ && backend == backend_) return;
    *this = BackendBuffer(backend, bytes);
  }
  size_t bytes() const { return bytes_; }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(data_);
  }

 private:
  Backend* backend_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Why the registry chose what it chose, for the start-up log.
struct BackendChoice {
  std::unique_ptr<Backend> backend;
  std::string reason;
};

enum class BackendKind { kAuto, kCpu, kCuda };
// "auto", "cpu" or "cuda"; false for anything else.
bool ParseBackendKind(std::string_view name, BackendKind* kind);

// `threads` <= 0 means one per core (CPU backend). kAuto picks CUDA when built, a device is
// present and cuBLASLt loads, otherwise the CPU, and `reason` says why; the environment variable
// ENGRAM_BACKEND (auto, cpu, cuda) overrides kAuto, so tools and tests can be pinned without a
// flag. kCuda that cannot be had returns no backend, with `reason` saying why.
BackendChoice CreateBackend(int threads, BackendKind kind = BackendKind::kAuto);

}  // namespace engram
