// CpuBackend::ProductKeyScores (backend.h, DESIGN §2.4 step 3), in a file of its own because it
// is compiled without GCC's loop vectoriser (kernels/CMakeLists.txt): each key's sum must stay a
// chain in ascending order, so the only vectorisation that keeps its roundings runs 16 keys side by
// side, which GCC's SLP vectoriser finds in SubKeyDotsAccumulate<16>; left on, the loop
// vectoriser instead vectorises the products along a key and gathers them back, 4x slower.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "engram/kernels/product_key_math.h"
#include "kernels/cpu/cpu_backend.h"

namespace engram {

void CpuBackend::ProductKeyScores(const ProductKeyScoresParams& p) {
  if (recorder_.Defer([=, this] { ProductKeyScores(p); })) return;
  const int half = p.k_dim / 2;
  const int64_t n = p.n_keys;
  if (p.rows == 0 || n == 0) return;
  // Work items: blocks of kKeyBlock keys of one (head, half) pair, for every row. A block is
  // copied transposed ([half][kKeyBlock], zero past the last key) once and serves all rows: the
  // block's chains then run side by side in vector lanes, each key's sum as SubKeyDotsAccumulate
  // defines it (the layout changes no rounding), and the keys are read once per call, not per row.
  constexpr int kKeyBlock = 16;
  const int64_t blocks = (n + kKeyBlock - 1) / kKeyBlock;
  const int64_t pair_stride = static_cast<int64_t>(p.heads) * p.k_dim;  // query floats per row
  pool_.ParallelFor(
      2 * p.heads * blocks,
      std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, p.rows * kKeyBlock * half)),
      [&](int64_t w0, int64_t w1) {
        std::vector<float> block(static_cast<size_t>(half) * kKeyBlock);
        for (int64_t w = w0; w < w1; ++w) {
          const int64_t pair = w / blocks;  // head * 2 + s
          const int64_t key0 = (w % blocks) * kKeyBlock;
          const int count = static_cast<int>(std::min<int64_t>(kKeyBlock, n - key0));
          const float* keys = p.keys + (pair * n + key0) * half;
          for (int j = 0; j < half; ++j)
            for (int t = 0; t < kKeyBlock; ++t)
              block[j * kKeyBlock + t] = t < count ? keys[static_cast<int64_t>(t) * half + j] : 0.f;
          const int64_t q_offset = (pair / 2) * p.k_dim + (pair % 2) * half;
          for (int64_t r = 0; r < p.rows; ++r) {
            float acc[kKeyBlock] = {};
            SubKeyDotsAccumulate<kKeyBlock>(acc, p.query + r * pair_stride + q_offset, block.data(),
                                            1, kKeyBlock, half);
            float* out = p.scores + (r * 2 * p.heads + pair) * n + key0;
            for (int t = 0; t < count; ++t) out[t] = acc[t];
          }
        }
      });
}

}  // namespace engram
