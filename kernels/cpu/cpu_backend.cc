// Elementwise and per-row ops of the CPU backend. Each calls the shared row math of
// row_math.h so the CUDA kernels and these loops compute the same thing.
#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "engram/kernels/check.h"
#include "engram/kernels/row_math.h"
#include "engram/kernels/sample_logits.h"

namespace engram {

void CpuBackend::RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
                         float* y) {
  if (recorder_.Defer([=, this] { RmsNorm(x, rows, dim, weight, eps, y); })) return;
  pool_.ParallelFor(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) RmsNormRow(x + r * dim, weight, dim, eps, y + r * dim);
  });
}

void CpuBackend::RmsNormBranches(const float* x, int64_t rows, int branches, int dim,
                                 const float* weights, float eps, float* y) {
  if (recorder_.Defer([=, this] { RmsNormBranches(x, rows, branches, dim, weights, eps, y); }))
    return;
  pool_.ParallelFor(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int m = 0; m < branches; ++m) {
        const int64_t off = (r * branches + m) * dim;
        RmsNormRow(x + off, weights + static_cast<int64_t>(m) * dim, dim, eps, y + off);
      }
  });
}

void CpuBackend::Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
                      const float* inv_freq) {
  if (recorder_.Defer([=, this] { Rope(x, rows, heads, head_dim, pos, inv_freq); })) return;
  pool_.ParallelFor(rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int h = 0; h < heads; ++h)
        RopeHead(x + (r * heads + h) * head_dim, head_dim, pos[r], inv_freq);
  });
}

void CpuBackend::SwiGlu(const float* gate, const float* up, int64_t n, float* out) {
  if (recorder_.Defer([=, this] { SwiGlu(gate, up, n, out); })) return;
  pool_.ParallelFor(n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) out[i] = Silu(gate[i]) * up[i];
  });
}

void CpuBackend::Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) {
  if (recorder_.Defer([=, this] { Embedding(table, ids, n, out); })) return;
  const int64_t d = table.cols;
  for (int64_t r = 0; r < n; ++r) {
    if (table.dtype == DType::kBF16) {
      const uint16_t* src = static_cast<const uint16_t*>(table.data) + ids[r] * d;
      for (int64_t j = 0; j < d; ++j) out[r * d + j] = Bf16ToFloat(src[j]);
    } else {
      std::memcpy(out + r * d, static_cast<const float*>(table.data) + ids[r] * d,
                  d * sizeof(float));
    }
  }
}

void CpuBackend::Attention(const AttentionBatch& batch, const KvLayer& kv, const float* q,
                           const float* k, const float* v, int num_heads, float* out) {
  if (recorder_.Defer([=, this] { Attention(batch, kv, q, k, v, num_heads, out); })) return;
  const int hd = kv.head_dim, nkv = kv.num_kv_heads, bs = kv.block_size;
  const int64_t kv_row = static_cast<int64_t>(nkv) * hd;
  auto slot = [&](int s, int64_t pos) {
    const int32_t block =
        batch.block_tables[static_cast<int64_t>(s) * batch.block_table_stride + pos / bs];
    return (static_cast<int64_t>(block) * bs + pos % bs) * kv_row;
  };
  // Store the step's keys and values first: a row attends to the rows before it in its step.
  for (int s = 0; s < batch.num_seqs; ++s) {
    for (int32_t r = batch.row_begin[s]; r < batch.row_begin[s + 1]; ++r) {
      const int64_t pos = batch.pos_begin[s] + (r - batch.row_begin[s]);
      std::memcpy(kv.k + slot(s, pos), k + r * kv_row, kv_row * sizeof(float));
      std::memcpy(kv.v + slot(s, pos), v + r * kv_row, kv_row * sizeof(float));
    }
  }
  const int64_t total_rows = batch.row_begin[batch.num_seqs];
  const int group = num_heads / nkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // Map each row to its sequence once; rows of one sequence are contiguous.
  std::vector<int> seq_of(static_cast<size_t>(total_rows));
  for (int s = 0; s < batch.num_seqs; ++s)
    for (int32_t r = batch.row_begin[s]; r < batch.row_begin[s + 1]; ++r) seq_of[r] = s;

  pool_.ParallelFor(total_rows * num_heads, 4, [&](int64_t w0, int64_t w1) {
    std::vector<float> scores;
    std::vector<float> acc(hd);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t r = w / num_heads;
      const int h = static_cast<int>(w % num_heads);
      const int s = seq_of[r];
      const int64_t pos = batch.pos_begin[s] + (r - batch.row_begin[s]);
      const int g = h / group;
      const float* qh = q + (r * num_heads + h) * hd;
      scores.resize(pos + 1);
      float mx = -INFINITY;
      for (int64_t p = 0; p <= pos; ++p) {
        const float* kp = kv.k + slot(s, p) + static_cast<int64_t>(g) * hd;
        float dot = 0.f;
        for (int i = 0; i < hd; ++i) dot += qh[i] * kp[i];
        scores[p] = dot * scale;
        mx = std::max(mx, scores[p]);
      }
      float sum = 0.f;
      for (int64_t p = 0; p <= pos; ++p) {
        scores[p] = std::exp(scores[p] - mx);
        sum += scores[p];
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t p = 0; p <= pos; ++p) {
        const float* vp = kv.v + slot(s, p) + static_cast<int64_t>(g) * hd;
        const float wgt = scores[p];
        for (int i = 0; i < hd; ++i) acc[i] += wgt * vp[i];
      }
      float* o = out + (r * num_heads + h) * hd;
      const float inv = 1.0f / sum;
      for (int i = 0; i < hd; ++i) o[i] = acc[i] * inv;
    }
  });
}

void CpuBackend::EngramGate(const EngramGateParams& p) {
  if (recorder_.Defer([=, this] { EngramGate(p); })) return;
  const int D = p.hidden, M = p.branches;
  pool_.ParallelFor(p.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> qn(D), kn(D);
    for (int64_t r = r0; r < r1; ++r) {
      for (int m = 0; m < M; ++m) {
        const int64_t wm = static_cast<int64_t>(m) * D;
        RmsNormRow(p.hidden_in + (r * M + m) * D, p.query_norm + wm, D, kFloat32Eps, qn.data());
        RmsNormRow(p.keys + (m * p.rows + r) * D, p.key_norm + wm, D, kFloat32Eps, kn.data());
        float dot = 0.f;
        for (int i = 0; i < D; ++i) dot += qn[i] * kn[i];
        const float alpha = EngramGateFromDot(dot, D);
        p.gates[r * M + m] = alpha;
        const float* v = p.value + r * D;
        float* u = p.gated + (r * M + m) * D;
        for (int i = 0; i < D; ++i) u[i] = alpha * v[i];
        if (p.z != nullptr) RmsNormRow(u, p.conv_norm + wm, D, p.conv_eps, p.z + (r * M + m) * D);
      }
    }
  });
}

void CpuBackend::ShortConv(const ShortConvParams& p) {
  if (recorder_.Defer([=, this] { ShortConv(p); })) return;
  const int C = p.channels, w = p.kernel;
  pool_.ParallelFor(p.rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* const* taps = p.taps + r * (w - 1);
      const float* z = p.z + r * C;
      const float* u = p.gated + r * C;
      float* o = p.out != nullptr ? p.out + r * C : nullptr;
      float* res = p.residual != nullptr ? p.residual + r * C : nullptr;
      for (int c = 0; c < C; ++c) {
        const float* wc = p.weight + static_cast<int64_t>(c) * w;
        float y = 0.f;
        for (int i = 0; i < w - 1; ++i)
          if (taps[i] != nullptr) y += wc[i] * taps[i][c];
        y += wc[w - 1] * z[c];
        const float out = u[c] + Silu(y);
        if (o != nullptr) o[c] = out;
        if (res != nullptr) res[c] += out;
      }
    }
  });
  // Only now: a stored row may overwrite history another row's tap has just read.
  if (p.z_store != nullptr)
    for (int64_t r = 0; r < p.rows; ++r)
      if (p.z_store[r] != nullptr) std::memcpy(p.z_store[r], p.z + r * C, C * sizeof(float));
}

void CpuBackend::BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h) {
  if (recorder_.Defer([=, this] { BroadcastBranches(x, rows, branches, dim, h); })) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int m = 0; m < branches; ++m)
      std::memcpy(h + (r * branches + m) * dim, x + r * dim, dim * sizeof(float));
}

void CpuBackend::BranchMean(const float* h, int64_t rows, int branches, int dim, float* x) {
  if (recorder_.Defer([=, this] { BranchMean(h, rows, branches, dim, x); })) return;
  if (branches == 1) {
    if (x != h) std::memcpy(x, h, rows * dim * sizeof(float));
    return;
  }
  const float count = static_cast<float>(branches);
  for (int64_t r = 0; r < rows; ++r)
    for (int j = 0; j < dim; ++j) {
      float s = 0.f;
      for (int m = 0; m < branches; ++m) s += h[(r * branches + m) * dim + j];
      x[r * dim + j] = s / count;
    }
}

void CpuBackend::AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h) {
  if (recorder_.Defer([=, this] { AddToBranches(delta, rows, branches, dim, h); })) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int m = 0; m < branches; ++m) {
      float* dst = h + (r * branches + m) * dim;
      const float* src = delta + r * dim;
      for (int j = 0; j < dim; ++j) dst[j] += src[j];
    }
}

void CpuBackend::GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out) {
  if (recorder_.Defer([=, this] { GatherRows(x, index, n, dim, out); })) return;
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(out + i * dim, x + static_cast<int64_t>(index[i]) * dim, dim * sizeof(float));
}

void CpuBackend::DequantRows(const void* packed, int64_t packed_bytes, DType dtype, int d,
                             const int32_t* src_row, int64_t rows, float* out) {
  if (recorder_.Defer(
          [=, this] { DequantRows(packed, packed_bytes, dtype, d, src_row, rows, out); }))
    return;
  const int64_t data_bytes = static_cast<int64_t>(d) * DTypeSize(dtype);
  pool_.ParallelFor(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto* row = static_cast<const uint8_t*>(packed) + src_row[r] * packed_bytes;
      DequantRow(row, row + data_bytes, dtype, d, out + r * d);
    }
  });
}

namespace {

class CpuHostTable final : public BackendTable {
 public:
  explicit CpuHostTable(const PackedTable& t) : table(t) {}
  BackendTableStats stats() const override {
    const uint64_t n = rows_read.load(std::memory_order_relaxed);
    return BackendTableStats{n, 0, n};
  }
  PackedTable table;
  std::atomic<uint64_t> rows_read{0};
};

}  // namespace

std::unique_ptr<BackendTable> CpuBackend::OpenHostTable(const PackedTable& table, size_t, int,
                                                        std::string*) {
  return std::make_unique<CpuHostTable>(table);
}

void CpuBackend::FetchPackedRows(BackendTable& table, const int64_t* ids, int64_t n, void* out) {
  recorder_.CheckNotRecording("FetchPackedRows");
  auto& t = static_cast<CpuHostTable&>(table);
  const int64_t pb = t.table.packed_bytes;
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(static_cast<char*>(out) + i * pb,
                static_cast<const char*>(t.table.data) + ids[i] * pb, static_cast<size_t>(pb));
  t.rows_read.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
}

void CpuBackend::Sample(const SampleBatch& b) {
  recorder_.CheckNotRecording("Sample");
  SampleScratch scratch;
  for (int r = 0; r < b.rows; ++r) {
    auto csr = [&](const int32_t* offsets, const int32_t* values) {
      return offsets == nullptr
                 ? std::span<const int32_t>()
                 : std::span<const int32_t>(values + offsets[r],
                                            static_cast<size_t>(offsets[r + 1] - offsets[r]));
    };
    b.tokens[r] =
        SampleLogits(b.params[r],
                     std::span<float>(b.logits + static_cast<int64_t>(r) * b.vocab,
                                      static_cast<size_t>(b.vocab)),
                     csr(b.seen_offsets, b.seen_tokens), csr(b.count_offsets, b.count_tokens),
                     csr(b.count_offsets, b.count_values), &b.rng[r], &scratch);
  }
}

void* CpuBackend::Allocate(size_t bytes) {
  // aligned_alloc wants a multiple of the alignment.
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  ENGRAM_CHECK_MSG(p != nullptr, "CpuBackend: out of memory allocating %zu bytes", bytes);
  return p;
}

void CpuBackend::Free(void* p) { std::free(p); }

void CpuBackend::Upload(void* dst, const void* src, size_t bytes) {
  recorder_.CheckNotRecording("Upload");
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void CpuBackend::Download(void* dst, const void* src, size_t bytes) {
  recorder_.CheckNotRecording("Download");
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

}  // namespace engram
