// Linear (y = x W^T + b) for the CPU backend: the matmul that dominates every step. Work is split
// over output features so decode (few rows, memory-bound) and prefill (many rows) both use every
// core; each weight row is read once per block of input rows and bf16 rows are widened once.
#include <algorithm>

#include "engram/kernels/row_math.h"
#include "kernels/cpu/cpu_backend.h"

namespace engram {
namespace {

// Eight independent partial sums let the compiler vectorise the reduction without -ffast-math.
// Built for AVX2+FMA and for baseline x86-64; the loader picks the best at start-up.
#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)
#define ENGRAM_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ENGRAM_MULTIVERSION
#endif

constexpr int kRowBlock = 4;

inline float Widen(float w) { return w; }
inline float Widen(uint16_t w) { return Bf16ToFloat(w); }

// out[r * ldo] = dot(w[0..k), x[r * ldx ..]) for `rows` rows of x. bf16 weights are widened in
// the inner loop (a shift), which vectorises and halves the bytes read per weight.
template <typename W>
ENGRAM_MULTIVERSION void DotBlock(const W* w, const float* x, int64_t ldx, int rows, int64_t k,
                                  float* out, int64_t ldo) {
  for (int r0 = 0; r0 < rows; r0 += kRowBlock) {
    const int nr = std::min(kRowBlock, rows - r0);
    float acc[kRowBlock][8] = {};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
      float wv[8];
      for (int j = 0; j < 8; ++j) wv[j] = Widen(w[i + j]);
      for (int r = 0; r < nr; ++r) {
        const float* xr = x + (r0 + r) * ldx + i;
        for (int j = 0; j < 8; ++j) acc[r][j] += wv[j] * xr[j];
      }
    }
    for (int r = 0; r < nr; ++r) {
      float s = ((acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3])) +
                ((acc[r][4] + acc[r][5]) + (acc[r][6] + acc[r][7]));
      const float* xr = x + (r0 + r) * ldx;
      for (int64_t t = i; t < k; ++t) s += Widen(w[t]) * xr[t];
      out[(r0 + r) * ldo] = s;
    }
  }
}

template <typename W>
void LinearRows(ThreadPool& pool, const float* x, int64_t m, const W* w, int64_t n, int64_t k,
                const float* bias, float* y) {
  // Rows of x per pass: keeps the x block in L2 while a chunk of weight rows streams by.
  const int64_t m_block = std::max<int64_t>(
      1, std::min<int64_t>(m, int64_t{256} * 1024 / (4 * std::max<int64_t>(k, 1))));
  pool.ParallelFor(n, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t mb = 0; mb < m; mb += m_block) {
      const int rows = static_cast<int>(std::min(m_block, m - mb));
      for (int64_t j = n0; j < n1; ++j) {
        DotBlock(w + j * k, x + mb * k, k, rows, k, y + mb * n + j, n);
        if (bias != nullptr)
          for (int r = 0; r < rows; ++r) y[(mb + r) * n + j] += bias[j];
      }
    }
  });
}

}  // namespace

void CpuBackend::Linear(const float* x, int64_t m, const Matrix& w, const float* bias, float* y) {
  if (recorder_.Defer([=, this] { Linear(x, m, w, bias, y); })) return;
  if (w.dtype == DType::kBF16) {
    LinearRows(pool_, x, m, static_cast<const uint16_t*>(w.data), w.rows, w.cols, bias, y);
  } else {
    LinearRows(pool_, x, m, static_cast<const float*>(w.data), w.rows, w.cols, bias, y);
  }
}

}  // namespace engram
