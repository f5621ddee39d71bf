// CudaBackend (cuda_backend.h): memory management and the mapping of Backend's ops onto ops.h's
// launchers and the cuBLASLt GEMM.
#include "kernels/cuda/cuda_backend.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "engram/kernels/check.h"
#include "engram/kernels/dtype.h"
#include "engram/kernels/product_key_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gather.h"
#include "kernels/cuda/row_cache.h"
#include "kernels/cuda/sampling.h"

namespace engram::cuda {
namespace {

constexpr size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Size classes of the caching allocator. A freed block is only reused for a request of the same
// class, so classes must be coarse enough that the per-sequence and per-step buffers of one
// model (which differ by a few rows) land in the same class, yet not waste much:
//  - up to 1 MiB, multiples of 256 B (the alignment Allocate promises anyway): small arrays
//    (ids, positions, block tables, tap pointers) of a given batch size recur exactly;
//  - up to 64 MiB, powers of two: activations grow with the batch, and a power of two absorbs
//    the growth of a buffer at the cost of at most half its size, bounded at 32 MiB;
//  - above, multiples of 2 MiB (the granularity cudaMalloc maps large blocks at, so the rounding
//    costs no device memory): these are the KV cache and Engram pools, allocated once and sized
//    from FreeMemory, where doubling would fail.
constexpr size_t kSmallClassLimit = size_t{1} << 20;
constexpr size_t kPow2ClassLimit = size_t{64} << 20;
constexpr size_t kLargeGranule = size_t{2} << 20;

size_t SizeClass(size_t bytes) {
  if (bytes <= kSmallClassLimit) return RoundUp(std::max<size_t>(bytes, 1), 256);
  if (bytes <= kPow2ClassLimit) return std::bit_ceil(bytes);
  return RoundUp(bytes, kLargeGranule);
}

// f32 weights are converted to bf16 on the host in pieces of this many values, so loading a
// large f32 matrix needs a bounded host buffer.
constexpr size_t kConvertChunk = size_t{8} << 20;

}  // namespace

// A host table opened by OpenHostTable.
//
// Why the RAM tier's own copy is registered rather than copied: an Engram table is up to ~100 GB
// and the RAM tier already holds it (or maps its file). cudaHostRegister pins and maps those
// pages where they are, so kernels read rows from them over PCIe (zero-copy) with no second
// pinned copy, which would double the host memory of the largest object in the process and cost
// a full pass over it at start-up. The price: the pages can no longer be swapped out, and the
// memory must stay allocated at the same address until the table is destroyed. Registration
// works on whole pages, so two tables must not share a page (the RAM tier's allocations are
// large, hence page-aligned mappings).
//
// Stats. The engine thread counts (the cache on the device, or `host_lookups` without one) and
// RefreshTableStats publishes into the atomics at the backend's sync points, where the stream is
// idle and reading the cache's counters costs one small copy. stats() may run on any thread.
class CudaBackend::HostTable final : public BackendTable {
 public:
  HostTable(CudaBackend* backend, int64_t packed_bytes, int max_rows)
      : backend_(backend), packed_bytes_(packed_bytes), max_rows_(max_rows) {}
  ~HostTable() override;
  HostTable(const HostTable&) = delete;
  HostTable& operator=(const HostTable&) = delete;

  BackendTableStats stats() const override {
    // Loaded in the reverse of Publish's order: a reader that sees a newer hits or transferred
    // value also sees the lookups published with it, so hits + transferred <= lookups always.
    BackendTableStats s;
    s.transferred = transferred_.load(std::memory_order_acquire);
    s.cache_hits = hits_.load(std::memory_order_acquire);
    s.lookups = lookups_.load(std::memory_order_relaxed);
    return s;
  }

  // Engine thread, both streams idle.
  void Refresh() {
    if (!dirty_) return;
    dirty_ = false;
    if (cache_ == nullptr) {
      Publish(host_lookups_, 0, host_lookups_);
    } else {
      const RowCacheStats c = cache_->ReadStats(backend_->copy_);  // the stream Fetch runs on
      Publish(c.lookups, c.hits, c.misses);
    }
  }

  CudaBackend* backend_;  // nullptr once the backend is gone (see ~CudaBackend)
  const int64_t packed_bytes_;
  const int max_rows_;
  int gather_blocks_ = 0;
  std::unique_ptr<PinnedHostTable> pinned_;
  std::unique_ptr<DeviceRowCache> cache_;  // nullptr: every row crosses PCIe
  uint64_t host_lookups_ = 0;              // rows fetched, without a cache
  bool dirty_ = false;                     // fetched from since the last Refresh

 private:
  void Publish(uint64_t lookups, uint64_t hits, uint64_t transferred) {
    lookups_.store(lookups, std::memory_order_relaxed);
    hits_.store(hits, std::memory_order_release);
    transferred_.store(transferred, std::memory_order_release);
  }

  std::atomic<uint64_t> lookups_{0};
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> transferred_{0};
};

CudaBackend::HostTable::~HostTable() {
  if (backend_ != nullptr) {
    // Fetches still in flight (copy stream) read the pinned pages and the cache.
    ENGRAM_CUDA_CHECK(cudaStreamSynchronize(backend_->copy_));
    ENGRAM_CUDA_CHECK(cudaStreamSynchronize(backend_->compute_));
    std::erase(backend_->tables_, this);
  }
  cache_.reset();
  pinned_.reset();  // unregisters; the memory stays the caller's
}

std::unique_ptr<CudaBackend> CudaBackend::Create(int device, std::string* error) {
  // Failures here are reported, not fatal: the registry falls back to the CPU. The runtime keeps
  // a failed call's error as the "last error" a later launch check would report; clear it.
  auto fail = [&](const char* what, cudaError_t err) {
    (void)cudaGetLastError();
    *error = CudaErrorText(what, err);
    return nullptr;
  };
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return fail("cudaSetDevice", err);
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) return fail("cudaGetDeviceProperties", err);

  // From here the destructor releases whatever was created.
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->info_ = GetDeviceInfo(device);
  // Non-blocking, so that work on the legacy default stream elsewhere in the process (the
  // load-time cudaMemcpy calls, other libraries) never serialises with a step.
  err = cudaStreamCreateWithFlags(&b->compute_, cudaStreamNonBlocking);
  if (err != cudaSuccess) return fail("compute stream", err);
  err = cudaStreamCreateWithFlags(&b->copy_, cudaStreamNonBlocking);
  if (err != cudaSuccess) return fail("copy stream", err);
  err = cudaEventCreateWithFlags(&b->copy_done_, cudaEventDisableTiming);
  if (err != cudaSuccess) return fail("copy event", err);
  err = cudaHostAlloc(&b->staging_.data, kInitialStagingBytes, cudaHostAllocDefault);
  if (err != cudaSuccess) return fail("pinned staging", err);
  b->staging_.bytes = kInitialStagingBytes;

  std::string gemm_error;
  b->gemm_ = CublasLtGemm::Create(&gemm_error);
  if (b->gemm_ == nullptr) {
    (void)cudaGetLastError();
    *error = "cuBLASLt: " + gemm_error;
    return nullptr;
  }

  char figures[128];
  std::snprintf(figures, sizeof figures, " (device %d, sm_%d%d, %d SMs, %.1f GiB)", device,
                prop.major, prop.minor, b->info_.num_sms,
                static_cast<double>(prop.totalGlobalMem) / (1 << 30));
  b->description_ = prop.name + std::string(figures) + ", cuBLASLt " + b->gemm_->library();
  return b;
}

CudaBackend::~CudaBackend() {
  // Ops may still read any of the memory below.
  if (compute_ != nullptr) ENGRAM_CUDA_CHECK(cudaStreamSynchronize(compute_));
  if (copy_ != nullptr) ENGRAM_CUDA_CHECK(cudaStreamSynchronize(copy_));
  // Host tables belong to their callers and must be destroyed before the backend. One that is
  // not is only cut loose: its destructor then neither waits on the (destroyed) stream nor
  // unregisters from this object, and still releases its cache and registration.
  for (HostTable* t : tables_) t->backend_ = nullptr;
  tables_.clear();
  for (const auto& [p, size] : live_) ENGRAM_CUDA_CHECK(cudaFree(p));
  live_.clear();
  for (const auto& [size, p] : cached_) ENGRAM_CUDA_CHECK(cudaFree(p));
  cached_.clear();
  for (void* p : resident_) ENGRAM_CUDA_CHECK(cudaFree(p));
  resident_.clear();
  gemm_.reset();
  for (void* p : retired_staging_) ENGRAM_CUDA_CHECK(cudaFreeHost(p));
  if (staging_.data != nullptr) ENGRAM_CUDA_CHECK(cudaFreeHost(staging_.data));
  if (copy_done_ != nullptr) ENGRAM_CUDA_CHECK(cudaEventDestroy(copy_done_));
  if (copy_ != nullptr) ENGRAM_CUDA_CHECK(cudaStreamDestroy(copy_));
  if (compute_ != nullptr) ENGRAM_CUDA_CHECK(cudaStreamDestroy(compute_));
}

// --- memory ---------------------------------------------------------------------------------

// cudaFree synchronises the whole device, and per-sequence buffers come and go every few steps,
// so freed blocks are kept and handed out again. Reuse needs no event: every op runs on the
// compute stream, so a block's next user is ordered after its previous readers. A copy into it
// is not (it runs on the copy stream), which backend.h's Upload contract covers: a block freed
// and handed out again within a step was touched since the last sync point.
void* CudaBackend::Allocate(size_t bytes) {
  const size_t size = SizeClass(bytes);
  void* p = nullptr;
  if (auto it = cached_.find(size); it != cached_.end()) {
    p = it->second;
    cached_.erase(it);
    cached_bytes_ -= size;
  } else {
    cudaError_t err = cudaMalloc(&p, size);
    // Releasing the cache synchronises, which a capture (a scratch buffer growing while a step
    // graph records) may not: there the out-of-memory report below comes at once.
    if (err == cudaErrorMemoryAllocation && !capturing_) {
      (void)cudaGetLastError();  // not sticky, but a later launch check would report it
      ReleaseCache();
      err = cudaMalloc(&p, size);
    }
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t live = 0;
      for (const auto& entry : live_) live += entry.second;
      size_t free_bytes = 0, total = 0;
      ENGRAM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
      ENGRAM_CHECK_MSG(false,
                       "CudaBackend: out of device memory allocating %zu bytes (class %zu); this "
                       "backend holds %zu bytes of buffers, the device has %zu of %zu bytes free",
                       bytes, size, live, free_bytes, total);
    }
    ENGRAM_CUDA_CHECK(err);
  }
  live_.emplace(p, size);
  return p;
}

void CudaBackend::Free(void* p) {
  if (p == nullptr) return;
  const auto it = live_.find(p);
  ENGRAM_CHECK_MSG(it != live_.end(), "CudaBackend::Free(%p): not allocated by this backend", p);
  cached_.emplace(it->second, p);
  cached_bytes_ += it->second;
  live_.erase(it);
}

void CudaBackend::ReleaseCache() {
  CheckNotCapturing("ReleaseCache");
  // A cached block may have been freed this step while an op still reads it.
  ENGRAM_CUDA_CHECK(cudaStreamSynchronize(compute_));
  for (const auto& [size, p] : cached_) ENGRAM_CUDA_CHECK(cudaFree(p));
  cached_.clear();
  cached_bytes_ = 0;
}

void* CudaBackend::AllocateResident(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    ReleaseCache();
    err = cudaMalloc(&p, bytes);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    ENGRAM_CHECK_MSG(false, "CudaBackend: out of device memory loading %zu bytes of weights",
                     bytes);
  }
  ENGRAM_CUDA_CHECK(err);
  resident_.push_back(p);
  return p;
}

// Staging lifetime: a slot is read by the copy engine some time after Upload returns, so no
// slot is handed out twice between sync points. When the arena is full, a bigger one replaces
// it and the full one is kept (retired) until the next sync point, when every copy is known to
// have finished; the arena thus grows to what one step uploads and then stays put.
void* CudaBackend::StagingSlot(size_t bytes) {
  size_t offset = RoundUp(staging_.used, 256);
  if (offset + bytes > staging_.bytes) {
    size_t size = std::max(kInitialStagingBytes, staging_.bytes * 2);
    while (size < bytes) size *= 2;
    if (staging_.data != nullptr) retired_staging_.push_back(staging_.data);
    staging_ = Arena{};
    ENGRAM_CUDA_CHECK(cudaHostAlloc(&staging_.data, size, cudaHostAllocDefault));
    staging_.bytes = size;
    offset = 0;
  }
  staging_.used = offset + bytes;
  return static_cast<char*>(staging_.data) + offset;
}

void CudaBackend::ResetStaging() {
  for (void* p : retired_staging_) ENGRAM_CUDA_CHECK(cudaFreeHost(p));
  retired_staging_.clear();
  staging_.used = 0;
}

void CudaBackend::Upload(void* dst, const void* src, size_t bytes) {
  CheckNotCapturing("Upload");
  if (bytes == 0) return;
  if (bytes > kMaxStagedUploadBytes) {
    // Bulk (load-time) data: copied straight from `src` in call order and waited for, since
    // `src` is the caller's again once this returns. That makes this a sync point.
    ENGRAM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, compute_));
    ENGRAM_CUDA_CHECK(cudaStreamSynchronize(compute_));
    ResetStaging();
    return;
  }
  void* slot = StagingSlot(bytes);
  std::memcpy(slot, src, bytes);
  ENGRAM_CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, copy_));
  ENGRAM_CUDA_CHECK(cudaEventRecord(copy_done_, copy_));
  ENGRAM_CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_, 0));
}

void CudaBackend::Download(void* dst, const void* src, size_t bytes) {
  CheckNotCapturing("Download");
  if (bytes > 0)
    ENGRAM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_));
  // The compute stream waited for every staged copy, so once it is idle the copy stream is too.
  ENGRAM_CUDA_CHECK(cudaStreamSynchronize(compute_));
  ResetStaging();
  RefreshTableStats();
}

void CudaBackend::Synchronize() {
  CheckNotCapturing("Synchronize");
  ENGRAM_CUDA_CHECK(cudaStreamSynchronize(compute_));
  ENGRAM_CUDA_CHECK(cudaStreamSynchronize(copy_));
  ResetStaging();
  RefreshTableStats();
}

void CudaBackend::RefreshTableStats() {
  for (HostTable* t : tables_) t->Refresh();
}

std::pair<size_t, size_t> CudaBackend::FreeMemory() const {
  size_t free_bytes = 0, total = 0;
  ENGRAM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return {free_bytes + cached_bytes_, total};
}

// Load-time copies are synchronous cudaMemcpy calls from pageable memory, which return once the
// data is staged by the driver but run on the legacy default stream; the non-blocking compute
// stream does not wait for that stream, hence the device synchronisation after them.
Matrix CudaBackend::Resident(const Matrix& host) {
  ENGRAM_CHECK_MSG(host.dtype == DType::kF32 || host.dtype == DType::kBF16,
                   "CudaBackend::Resident: weights must be f32 or bf16 (dtype %d)",
                   static_cast<int>(host.dtype));
  const size_t n = static_cast<size_t>(host.rows) * static_cast<size_t>(host.cols);
  Matrix out{nullptr, DType::kBF16, host.rows, host.cols};
  if (n == 0) return out;
  auto* dev = static_cast<uint16_t*>(AllocateResident(n * sizeof(uint16_t)));
  if (host.dtype == DType::kBF16) {
    ENGRAM_CUDA_CHECK(cudaMemcpy(dev, host.data, n * sizeof(uint16_t), cudaMemcpyHostToDevice));
  } else {
    // The GEMM takes bf16 weights; converting once here halves their memory and bandwidth.
    const auto* src = static_cast<const float*>(host.data);
    std::vector<uint16_t> chunk(std::min(n, kConvertChunk));
    for (size_t i = 0; i < n; i += chunk.size()) {
      const size_t len = std::min(chunk.size(), n - i);
      for (size_t j = 0; j < len; ++j) chunk[j] = FloatToBf16(src[i + j]);
      // Returns once `chunk` is staged, so it may be refilled at once.
      ENGRAM_CUDA_CHECK(
          cudaMemcpy(dev + i, chunk.data(), len * sizeof(uint16_t), cudaMemcpyHostToDevice));
    }
  }
  ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());
  out.data = dev;
  return out;
}

const float* CudaBackend::Resident(const float* host, int64_t n) {
  if (host == nullptr || n <= 0) return nullptr;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  void* dev = AllocateResident(bytes);
  ENGRAM_CUDA_CHECK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
  ENGRAM_CUDA_CHECK(cudaDeviceSynchronize());
  return static_cast<const float*>(dev);
}

// Grow-only, through the caching allocator: the old block goes back to the cache rather than
// to cudaFree (which would synchronise the device mid-step), and stream order keeps the ops
// that still use it ahead of its next owner.
void* CudaBackend::Reserve(Scratch& s, size_t bytes) {
  if (capturing_) {
    capture_uses_gemm_ |= &s == &gemm_x_;
    capture_uses_attention_ |= &s == &attention_ws_;
    capture_grew_ |= bytes > s.bytes;
  }
  if (bytes <= s.bytes) return s.data;
  Free(s.data);
  s.data = Allocate(bytes);
  s.bytes = SizeClass(bytes);
  ++s.generation;
  return s.data;
}

// --- ops ------------------------------------------------------------------------------------

void CudaBackend::Linear(const float* x, int64_t m, const Matrix& w, const float* bias, float* y) {
  if (m == 0) return;
  ENGRAM_CHECK_MSG(w.dtype == DType::kBF16, "CudaBackend::Linear: weights must be Resident() bf16");
  const int64_t k = w.cols;
  auto* xbf = static_cast<uint16_t*>(
      Reserve(gemm_x_, static_cast<size_t>(m) * static_cast<size_t>(k) * sizeof(uint16_t)));
  const cudaStream_t s = compute_;
  ConvertToBf16(x, m * k, xbf, s);
  GemmArgs a;
  a.m = m;
  a.n = w.rows;
  a.k = k;
  a.x = xbf;
  a.w = static_cast<const uint16_t*>(w.data);
  a.bias = bias;
  a.y = y;
  a.out_dtype = DType::kF32;
  const std::string err = gemm_->Run(a, s);
  ENGRAM_CHECK_MSG(err.empty(),
                   "CudaBackend::Linear m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " bias=%s: %s", m,
                   w.rows, k, bias != nullptr ? "yes" : "no", err.c_str());
}

void CudaBackend::RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
                          float* y) {
  cuda::RmsNorm(x, rows, dim, weight, /*branches=*/1, eps, y, compute_);
}

void CudaBackend::RmsNormBranches(const float* x, int64_t rows, int branches, int dim,
                                  const float* weights, float eps, float* y) {
  cuda::RmsNorm(x, rows * branches, dim, weights, branches, eps, y, compute_);
}

void CudaBackend::Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
                       const float* inv_freq) {
  cuda::Rope(x, rows, heads, head_dim, pos, inv_freq, compute_);
}

void CudaBackend::SwiGlu(const float* gate, const float* up, int64_t n, float* out) {
  cuda::SwiGlu(gate, up, n, out, compute_);
}

void CudaBackend::Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) {
  ENGRAM_CHECK_MSG(table.dtype == DType::kF32 || table.dtype == DType::kBF16,
                   "CudaBackend::Embedding: table must be f32 or bf16 (dtype %d)",
                   static_cast<int>(table.dtype));
  cuda::Embedding(table.data, table.dtype, static_cast<int>(table.cols), ids, n, out, compute_);
}

void CudaBackend::Attention(const AttentionBatch& batch, const KvLayer& kv, const float* q,
                            const float* k, const float* v, int num_heads, float* out) {
  if (batch.num_rows == 0) return;
  PagedAttentionParams p;
  p.num_seqs = batch.num_seqs;
  p.num_rows = batch.num_rows;
  p.row_begin = batch.row_begin;
  p.pos_begin = batch.pos_begin;
  p.block_tables = batch.block_tables;
  p.block_table_stride = batch.block_table_stride;
  p.k_cache = kv.k;
  p.v_cache = kv.v;
  p.block_size = kv.block_size;
  p.num_kv_heads = kv.num_kv_heads;
  p.head_dim = kv.head_dim;
  p.num_heads = num_heads;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.max_context = batch.max_context;
  p.num_splits =
      ChooseAttentionSplits(batch.num_rows, kv.num_kv_heads, batch.max_context, info_.num_sms);
  if (p.num_splits > 1)
    p.workspace = Reserve(attention_ws_, PagedAttentionWorkspaceBytes(batch.num_rows, num_heads,
                                                                      kv.head_dim, p.num_splits));
  PagedAttention(p, compute_);
}

void CudaBackend::EngramGate(const engram::EngramGateParams& p) {
  cuda::EngramGateParams g;
  g.rows = p.rows;
  g.hidden = p.hidden;
  g.branches = p.branches;
  g.hidden_in = p.hidden_in;
  g.keys = p.keys;
  g.value = p.value;
  g.key_norm = p.key_norm;
  g.query_norm = p.query_norm;
  g.conv_norm = p.conv_norm;
  g.conv_eps = p.conv_eps;
  g.gates = p.gates;
  g.gated = p.gated;
  g.z = p.z;
  cuda::EngramGate(g, compute_);
}

void CudaBackend::ShortConv(const engram::ShortConvParams& p) {
  cuda::ShortConvParams c;
  c.rows = p.rows;
  c.channels = p.channels;
  c.kernel = p.kernel;
  c.weight = p.weight;
  c.z = p.z;
  c.taps = p.taps;
  c.gated = p.gated;
  c.out = p.out;
  c.residual = p.residual;
  const cudaStream_t s = compute_;
  cuda::ShortConv(c, s);
  // After the conv on the same stream: every tap (possibly a history slot about to be
  // overwritten) has been read.
  if (p.z_store != nullptr) StoreRows(p.z, p.rows, p.channels, p.z_store, s);
}

void CudaBackend::BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h) {
  cuda::BroadcastBranches(x, rows, branches, dim, h, compute_);
}

void CudaBackend::BranchMean(const float* h, int64_t rows, int branches, int dim, float* x) {
  cuda::BranchMean(h, rows, branches, dim, x, compute_);
}

void CudaBackend::AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h) {
  cuda::AddToBranches(delta, rows, branches, dim, h, compute_);
}

void CudaBackend::GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out) {
  cuda::GatherRows(x, index, n, dim, out, compute_);
}

// --- product-key memory ---------------------------------------------------------------------

void CudaBackend::ProductKeyScores(const engram::ProductKeyScoresParams& p) {
  ENGRAM_CHECK_MSG(p.heads >= 0 && p.k_dim > 0 && p.k_dim % 2 == 0 && p.n_keys >= 0,
                   "CudaBackend::ProductKeyScores: heads=%d k_dim=%d n_keys=%" PRId64, p.heads,
                   p.k_dim, p.n_keys);
  cuda::ProductKeyScoresParams c;
  c.rows = p.rows;
  c.heads = p.heads;
  c.k_dim = p.k_dim;
  c.n_keys = p.n_keys;
  c.query = p.query;
  c.keys = p.keys;
  c.scores = p.scores;
  cuda::ProductKeyScores(c, compute_);
}

void CudaBackend::RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values,
                          int32_t* index) {
  ENGRAM_CHECK_MSG(k >= 0 && k <= n && n <= INT32_MAX, "CudaBackend::RowTopK: k=%d of n=%" PRId64,
                   k, n);
  cuda::RowTopK(x, rows, n, k, values, index, compute_);
}

void CudaBackend::ProductKeyCandidates(const engram::ProductKeyCandidatesParams& p) {
  ENGRAM_CHECK_MSG(p.knn >= 0 && p.knn <= kMaxProductKeyKnn,
                   "CudaBackend::ProductKeyCandidates: knn=%d", p.knn);
  cuda::ProductKeyCandidatesParams c;
  c.groups = p.groups;
  c.knn = p.knn;
  c.n_keys = p.n_keys;
  c.best_scores = p.best_scores;
  c.best_ids = p.best_ids;
  c.weights = p.weights;
  c.indices = p.indices;
  cuda::ProductKeyCandidates(c, compute_);
}

void CudaBackend::WeightedRowSum(const engram::WeightedRowSumParams& p) {
  ENGRAM_CHECK_MSG(p.dtype == DType::kF32 || p.dtype == DType::kBF16 || p.dtype == DType::kF16 ||
                       p.dtype == DType::kF8E4M3,
                   "CudaBackend::WeightedRowSum: unsupported dtype %d", static_cast<int>(p.dtype));
  // As DequantRows: an fp8 row's d / 32 scale bytes follow its d values.
  const bool fp8 = p.dtype == DType::kF8E4M3;
  ENGRAM_CHECK_MSG(
      p.d > 0 && p.per_row >= 0 && (!fp8 || p.d % kFp8BlockSize == 0) &&
          p.packed_bytes >= int64_t{p.d} * DTypeSize(p.dtype) + (fp8 ? p.d / kFp8BlockSize : 0),
      "CudaBackend::WeightedRowSum: d=%d does not fit packed rows of %" PRId64 " bytes (dtype %d)",
      p.d, p.packed_bytes, static_cast<int>(p.dtype));
  cuda::WeightedRowSumParams c;
  c.rows = p.rows;
  c.per_row = p.per_row;
  c.packed = p.packed;
  c.packed_bytes = p.packed_bytes;
  c.dtype = p.dtype;
  c.d = p.d;
  c.rows_idx = p.rows_idx;
  c.weights = p.weights;
  c.out = p.out;
  cuda::WeightedRowSum(c, compute_);
}

void CudaBackend::SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x) {
  cuda::SigmoidScaleRows(logit, rows, dim, x, compute_);
}

// --- Engram rows ----------------------------------------------------------------------------

void CudaBackend::DequantRows(const void* packed, int64_t packed_bytes, DType dtype, int d,
                              const int32_t* src_row, int64_t rows, float* out) {
  ENGRAM_CHECK_MSG(dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16 ||
                       dtype == DType::kF8E4M3,
                   "CudaBackend::DequantRows: unsupported dtype %d", static_cast<int>(dtype));
  // The kernel reads an fp8 row's d / 32 scale bytes right after its d values.
  const bool fp8 = dtype == DType::kF8E4M3;
  ENGRAM_CHECK_MSG(
      d > 0 && (!fp8 || d % kFp8BlockSize == 0) &&
          packed_bytes >= int64_t{d} * DTypeSize(dtype) + (fp8 ? d / kFp8BlockSize : 0),
      "CudaBackend::DequantRows: d=%d does not fit packed rows of %" PRId64 " bytes (dtype %d)", d,
      packed_bytes, static_cast<int>(dtype));
  DequantParams p;
  p.packed = packed;
  p.packed_bytes = packed_bytes;
  p.dtype = dtype;
  p.d = d;
  p.src_row = src_row;
  p.rows = rows;
  p.out = out;
  cuda::DequantRows(p, compute_);
}

std::unique_ptr<BackendTable> CudaBackend::OpenHostTable(const PackedTable& table,
                                                         size_t cache_bytes, int max_rows_per_call,
                                                         std::string* error) {
  ENGRAM_CHECK_MSG(
      table.data != nullptr && table.rows > 0 && table.packed_bytes > 0 && max_rows_per_call > 0,
      "CudaBackend::OpenHostTable: %" PRId64 " rows of %" PRId64 " bytes at %p, %d rows per call",
      table.rows, table.packed_bytes, table.data, max_rows_per_call);
  auto t = std::make_unique<HostTable>(this, table.packed_bytes, max_rows_per_call);
  // Registration neither writes nor moves the memory (it is registered read-only where the device
  // supports that), hence the const_cast; see HostTable for why it is not copied.
  const size_t bytes = static_cast<size_t>(table.rows) * static_cast<size_t>(table.packed_bytes);
  std::string err;
  t->pinned_ = PinnedHostTable::Register(const_cast<void*>(table.data), bytes, &err);
  if (t->pinned_ == nullptr) {
    (void)cudaGetLastError();  // as in Create: not this backend's launches' error
    *error = "CudaBackend: " + err;
    return nullptr;
  }
  t->gather_blocks_ = GatherBlocks(info_);
  const uint64_t row_cost = static_cast<uint64_t>(table.packed_bytes + kRowCacheOverheadBytes);
  const int64_t cache_rows = static_cast<int64_t>(std::min<uint64_t>(
      cache_bytes / row_cost, static_cast<uint64_t>(table.rows) + kRowCacheWays - 1));
  if (cache_rows >= kRowCacheWays) {
    t->cache_ = DeviceRowCache::Create(info_, cache_rows, kRowCacheWays, table.packed_bytes,
                                       max_rows_per_call, &err);
    if (t->cache_ == nullptr) {
      (void)cudaGetLastError();
      *error = "CudaBackend: " + err;
      return nullptr;  // ~HostTable unregisters the memory
    }
  }
  tables_.push_back(t.get());
  return t;
}

void CudaBackend::FetchPackedRows(BackendTable& table, const int64_t* ids, int64_t n, void* out) {
  CheckNotCapturing("FetchPackedRows");
  auto* t = dynamic_cast<HostTable*>(&table);
  ENGRAM_CHECK_MSG(t != nullptr && t->backend_ == this,
                   "CudaBackend::FetchPackedRows: table not opened by this backend");
  ENGRAM_CHECK_MSG(n >= 0 && n <= t->max_rows_,
                   "CudaBackend::FetchPackedRows: %" PRId64 " rows, at most %d per call", n,
                   t->max_rows_);
  if (n == 0) return;
  t->dirty_ = true;
  // On the copy stream, behind the upload of `ids` (also there): the gather's small persistent
  // grid reads PCIe while the layers before this Engram layer run on the compute stream, which
  // waits for it only here. backend.h's contract keeps `out` unused since the last sync point.
  if (t->cache_ != nullptr) {
    t->cache_->Fetch(ids, static_cast<int>(n), t->pinned_->device_ptr(), out, t->packed_bytes_,
                     copy_);
  } else {
    t->host_lookups_ += static_cast<uint64_t>(n);
    GatherParams p;
    p.src = t->pinned_->device_ptr();
    p.row_bytes = t->packed_bytes_;
    p.ids = ids;
    p.dst_rows = nullptr;
    p.count = n;
    p.dst = out;
    p.blocks = t->gather_blocks_;
    cuda::GatherRows(p, copy_);
  }
  ENGRAM_CUDA_CHECK(cudaEventRecord(copy_done_, copy_));
  ENGRAM_CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_, 0));
}

void CudaBackend::Sample(const SampleBatch& b) {
  CheckNotCapturing("Sample");
  if (b.rows == 0) return;
  SampleParams p;
  p.rows = b.rows;
  p.vocab = b.vocab;
  p.logits = b.logits;
  p.row_params = b.params;
  p.seen_offsets = b.seen_offsets;
  p.seen_tokens = b.seen_tokens;
  p.count_offsets = b.count_offsets;
  p.count_tokens = b.count_tokens;
  p.count_values = b.count_values;
  p.rng = b.rng;
  p.tokens = b.tokens;
  p.all_greedy = b.all_greedy;
  if (!b.all_greedy) {
    p.workspace_bytes = SampleWorkspaceBytes(b.rows, b.vocab);
    p.workspace = Reserve(sample_ws_, p.workspace_bytes);
  }
  cuda::Sample(p, compute_);
}

}  // namespace engram::cuda
