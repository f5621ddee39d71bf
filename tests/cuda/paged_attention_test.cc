// Paged attention on the device against CpuBackend::Attention: a batch that mixes a prefill
// chunk from position 0, a decode row deep into a sequence whose history is already cached, and
// a prefill chunk continuing a sequence, over shuffled KV blocks; GQA groups of 1, 4 and 8,
// head dims 64, 80 (lanes partly idle) and 128, with and without the flash-decoding split.
//
// Tolerance, with u = 2^-24. Per (row, head) both sides compute scores s_p = scale * <q, k_p>
// (a head_dim-term float dot: error d_p <= hd * u * scale * sum_i |q_i k_pi|), weights
// exp(s_p - max) (CUDA's expf 2 ulp, glibc's 1), and o = sum_p w_p v_p / sum_p w_p over P
// positions. A relative error e in every weight moves o by at most 2e * max|v|; the sums add at
// most P roundings and the online form at most P rescales (an exp and a product each). So each
// side is within (2 (2 d + 3u) + 6 (P + 2) u) max|v| of the exact value, and the two sides
// within twice that. A wrong position, head or block gives errors of order max|v| itself.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::testing::DeviceBuffer;
using cuda::testing::kU;
using cuda::testing::RandomNormal;
using cuda::testing::SameFloat;
using cuda::testing::Stream;

struct Shape {
  int num_heads, num_kv_heads, head_dim, block_size;
};

struct SeqSpec {
  int64_t pos_begin;  // positions already cached (filled with random K/V)
  int rows;           // this step's rows
};

void RunCase(const Shape& shape, int num_splits_wanted) {
  std::mt19937 rng(100 + shape.head_dim + shape.num_heads);
  const int nh = shape.num_heads, nkv = shape.num_kv_heads, hd = shape.head_dim;
  const int bs = shape.block_size;
  const std::vector<SeqSpec> seqs = {{0, 37}, {300, 1}, {50, 5}};
  const int64_t kv_row = static_cast<int64_t>(nkv) * hd;

  // Blocks per sequence, dealt out of a shuffled pool so tables are not contiguous.
  std::vector<int32_t> row_begin{0};
  std::vector<int64_t> pos_begin;
  int max_blocks = 0;
  int64_t max_context = 0;
  for (const SeqSpec& s : seqs) {
    row_begin.push_back(row_begin.back() + s.rows);
    pos_begin.push_back(s.pos_begin);
    const int64_t end = s.pos_begin + s.rows;
    max_blocks = std::max<int>(max_blocks, static_cast<int>((end + bs - 1) / bs));
    max_context = std::max(max_context, end);
  }
  const int num_blocks = max_blocks * static_cast<int>(seqs.size()) + 3;
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  std::vector<int32_t> tables(seqs.size() * max_blocks);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = pool[i];
  std::vector<const int32_t*> table_ptrs;
  for (size_t s = 0; s < seqs.size(); ++s) table_ptrs.push_back(tables.data() + s * max_blocks);

  // The cache starts as random history for every slot (what earlier steps stored; slots this
  // step overwrites included, so a missed store shows).
  const auto k_cache0 = RandomNormal(static_cast<size_t>(num_blocks) * bs * kv_row, rng);
  const auto v_cache0 = RandomNormal(k_cache0.size(), rng);
  const int64_t rows = row_begin.back();
  const auto q = RandomNormal(rows * nh * hd, rng, 2.0f);  // peaky softmax
  const auto k = RandomNormal(rows * kv_row, rng), v = RandomNormal(rows * kv_row, rng);

  std::vector<float> k_cache = k_cache0, v_cache = v_cache0, want(rows * nh * hd);
  CpuBackend cpu(2);
  const AttentionBatch batch{static_cast<int>(seqs.size()),
                             rows,
                             row_begin.data(),
                             pos_begin.data(),
                             tables.data(),
                             max_blocks,
                             max_context};
  KvLayer layer{k_cache.data(), v_cache.data(), bs, nkv, hd};
  cpu.Attention(batch, layer, q.data(), k.data(), v.data(), nh, want.data());

  Stream stream;
  DeviceBuffer<int32_t> d_row_begin(row_begin), d_tables(tables);
  DeviceBuffer<int64_t> d_pos_begin(pos_begin);
  DeviceBuffer<float> d_k_cache(k_cache0), d_v_cache(v_cache0), dq(q), dk(k), dv(v);
  DeviceBuffer<float> dout(want.size());
  cuda::PagedAttentionParams p;
  p.num_seqs = static_cast<int>(seqs.size());
  p.num_rows = rows;
  p.row_begin = d_row_begin.get();
  p.pos_begin = d_pos_begin.get();
  p.block_tables = d_tables.get();
  p.block_table_stride = max_blocks;
  p.k_cache = d_k_cache.get();
  p.v_cache = d_v_cache.get();
  p.block_size = bs;
  p.num_kv_heads = nkv;
  p.head_dim = hd;
  p.num_heads = nh;
  p.q = dq.get();
  p.k = dk.get();
  p.v = dv.get();
  p.out = dout.get();
  p.num_splits = num_splits_wanted;
  p.max_context = max_context;
  DeviceBuffer<char> workspace(
      std::max<size_t>(1, cuda::PagedAttentionWorkspaceBytes(rows, nh, hd, p.num_splits)));
  p.workspace = workspace.get();
  cuda::PagedAttention(p, stream.get());
  const auto got = dout.Download();

  // The stores are plain copies: the caches must be bit-identical afterwards.
  const auto got_k = d_k_cache.Download(), got_v = d_v_cache.Download();
  for (size_t i = 0; i < k_cache.size(); ++i) {
    ASSERT_TRUE(SameFloat(got_k[i], k_cache[i])) << "K cache value " << i;
    ASSERT_TRUE(SameFloat(got_v[i], v_cache[i])) << "V cache value " << i;
  }

  const int group = nh / nkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int32_t r = row_begin[s]; r < row_begin[s + 1]; ++r) {
      const int64_t pos = pos_begin[s] + (r - row_begin[s]);
      for (int h = 0; h < nh; ++h) {
        const float* qh = q.data() + (r * nh + h) * hd;
        const int g = h / group;
        double d_max = 0, v_max = 0;
        for (int64_t t = 0; t <= pos; ++t) {
          const int64_t slot =
              (static_cast<int64_t>(table_ptrs[s][t / bs]) * bs + t % bs) * kv_row + g * hd;
          double mag = 0;
          for (int i = 0; i < hd; ++i) {
            mag += std::fabs(qh[i] * k_cache[slot + i]);
            v_max = std::max<double>(v_max, std::fabs(v_cache[slot + i]));
          }
          d_max = std::max(d_max, hd * kU * scale * mag);
        }
        const double positions = static_cast<double>(pos + 1);
        const double tol = 2 * (2 * (2 * d_max + 3 * kU) + 6 * (positions + 2) * kU) * v_max;
        for (int i = 0; i < hd; ++i) {
          const int64_t at = (r * nh + h) * hd + i;
          ASSERT_NEAR(got[at], want[at], tol) << "row " << r << " (pos " << pos << ") head " << h
                                              << " dim " << i << " splits " << p.num_splits;
        }
      }
    }
  }
}

TEST(CudaPagedAttention, MatchesCpuGroupedQueryAttention) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  RunCase({8, 2, 64, 16}, 1);
}

TEST(CudaPagedAttention, MatchesCpuWithoutGroupsAndWideHeads) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  RunCase({4, 4, 128, 8}, 1);
}

TEST(CudaPagedAttention, MatchesCpuWithPartlyIdleLanesAndGroupsOfEight) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  RunCase({16, 2, 80, 16}, 1);
}

TEST(CudaPagedAttention, FlashDecodingSplitsMergeToTheSameResult) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  RunCase({8, 2, 64, 16}, 3);
  RunCase({4, 4, 128, 8}, 7);
}

// Host-only: runs with or without a device.
TEST(CudaPagedAttention, SplitsOnlyWhenTheBatchLeavesSmsIdle) {
  // Enough (row, KV head) blocks already: no split.
  EXPECT_EQ(cuda::ChooseAttentionSplits(64, 8, 100000, 132), 1);
  // One decode row of a long sequence: split up to two blocks per SM.
  EXPECT_EQ(cuda::ChooseAttentionSplits(1, 8, 100000, 132), 32);  // 33 wanted, capped
  // ... but never into pieces under 256 positions.
  EXPECT_EQ(cuda::ChooseAttentionSplits(1, 8, 600, 132), 3);
  EXPECT_EQ(cuda::ChooseAttentionSplits(1, 8, 1, 132), 1);
  EXPECT_EQ(cuda::PagedAttentionWorkspaceBytes(10, 8, 64, 1), 0u);
  EXPECT_EQ(cuda::PagedAttentionWorkspaceBytes(10, 8, 64, 4), sizeof(float) * 10 * 8 * 4 * 66);
}

}  // namespace
}  // namespace engram
