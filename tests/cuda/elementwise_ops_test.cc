// The per-row and elementwise kernels of kernels/cuda/ops.h against CpuBackend on random inputs:
// RMSNorm (plain and per branch), RoPE, SwiGLU, embedding (f32, bf16), table-row dequantisation
// (f32, bf16, f16, fp8 e4m3 + ue8m0) and the float -> bf16 conversion. Outputs are poisoned
// (NaN) before each run. Tolerances, with u = 2^-24 (float unit roundoff):
//  - RMSNorm: both sides compute x * (1/sqrt(sum(x^2)/n + eps)) * w in float and differ only in
//    the order of the n-term sum of squares. Each side is within (n/2 + 6)u of the exact value
//    (row_math_shared_test derives it), so they are within (n + 12)u of each other.
//  - RoPE: the angle is the same float on both; CUDA's sinf/cosf are within 2 ulp and glibc's
//    within 1, and the device fuses a*c - b*s into one FMA: |diff| <= 2^-20 (|a| + |b|).
//  - SwiGLU: CUDA's expf is within 2 ulp, glibc's within 1; the add, divide and multiply add a
//    rounding each: relative 2^-20 bounds the difference with room.
//  - Embedding, dequantisation, bf16 conversion: exact conversions (a bf16/f16/fp8 value times
//    a power of two is a float), so the results must be bit-identical.
#include <cmath>
#include <random>
#include <vector>

#include "engram/kernels/row_math.h"
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

TEST(CudaOps, RmsNormMatchesCpuPlainAndPerBranch) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(1);
  CpuBackend cpu(2);
  Stream stream;
  for (int dim : {48, 1000, 4099}) {
    for (int branches : {1, 3}) {
      const int64_t tokens = 5, rows = tokens * branches;
      const auto x = RandomNormal(rows * dim, rng, 3.0f);
      const auto w = RandomNormal(static_cast<size_t>(branches) * dim, rng);
      std::vector<float> want(x.size());
      if (branches == 1) {
        cpu.RmsNorm(x.data(), rows, dim, w.data(), 1e-5f, want.data());
      } else {
        cpu.RmsNormBranches(x.data(), tokens, branches, dim, w.data(), 1e-5f, want.data());
      }
      DeviceBuffer<float> dx(x), dw(w), dy(x.size());
      cuda::RmsNorm(dx.get(), rows, dim, dw.get(), branches, 1e-5f, dy.get(), stream.get());
      const auto got = dy.Download();
      // In place (y aliases x) must give the same bits as out of place.
      cuda::RmsNorm(dx.get(), rows, dim, dw.get(), branches, 1e-5f, dx.get(), stream.get());
      const auto in_place = dx.Download();
      const double rel = (dim + 12) * kU;
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + 1e-30)
            << "dim " << dim << " branches " << branches << " value " << i;
        ASSERT_TRUE(SameFloat(in_place[i], got[i])) << "in place, value " << i;
      }
    }
  }
}

TEST(CudaOps, RopeMatchesCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(2);
  CpuBackend cpu(1);
  Stream stream;
  for (int head_dim : {32, 128}) {
    const int64_t rows = 6;
    const int heads = 4, half = head_dim / 2;
    std::vector<float> inv_freq(half);
    for (int i = 0; i < half; ++i)
      inv_freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * i / head_dim));
    const std::vector<int64_t> pos = {0, 1, 2, 777, 32767, 131071};
    const auto x = RandomNormal(rows * heads * head_dim, rng);
    std::vector<float> want = x;
    cpu.Rope(want.data(), rows, heads, head_dim, pos.data(), inv_freq.data());
    DeviceBuffer<float> dx(x), df(inv_freq);
    DeviceBuffer<int64_t> dpos(pos);
    cuda::Rope(dx.get(), rows, heads, head_dim, dpos.get(), df.get(), stream.get());
    const auto got = dx.Download();
    for (int64_t h = 0; h < rows * heads; ++h)
      for (int i = 0; i < half; ++i) {
        const int64_t lo = h * head_dim + i, hi = lo + half;
        const double tol = std::ldexp(std::fabs(x[lo]) + std::fabs(x[hi]), -20);
        ASSERT_NEAR(got[lo], want[lo], tol) << "head " << h << " pair " << i;
        ASSERT_NEAR(got[hi], want[hi], tol) << "head " << h << " pair " << i;
      }
  }
}

TEST(CudaOps, SwiGluMatchesCpu) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(3);
  CpuBackend cpu(2);
  Stream stream;
  const int64_t n = 100003;
  const auto gate = RandomNormal(n, rng, 4.0f), up = RandomNormal(n, rng);
  std::vector<float> want(n);
  cpu.SwiGlu(gate.data(), up.data(), n, want.data());
  DeviceBuffer<float> dg(gate), du(up), dout(n);
  cuda::SwiGlu(dg.get(), du.get(), n, dout.get(), stream.get());
  const auto got = dout.Download();
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(got[i], want[i], std::ldexp(std::fabs(want[i]), -20) + 1e-30) << i;
}

TEST(CudaOps, EmbeddingF32AndBf16AreExact) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(4);
  CpuBackend cpu(1);
  Stream stream;
  const int vocab = 1000, dim = 96;
  const auto table = RandomNormal(static_cast<size_t>(vocab) * dim, rng);
  std::vector<uint16_t> table_bf16(table.size());
  for (size_t i = 0; i < table.size(); ++i) table_bf16[i] = FloatToBf16(table[i]);
  const std::vector<int32_t> ids = {0, vocab - 1, 17, 17, 500, 3};
  DeviceBuffer<int32_t> dids(ids);
  DeviceBuffer<float> dtable(table);
  DeviceBuffer<uint16_t> dtable_bf16(table_bf16);
  for (bool bf16 : {false, true}) {
    const Matrix m{bf16 ? static_cast<const void*>(table_bf16.data()) : table.data(),
                   bf16 ? DType::kBF16 : DType::kF32, vocab, dim};
    std::vector<float> want(ids.size() * dim);
    cpu.Embedding(m, ids.data(), static_cast<int64_t>(ids.size()), want.data());
    DeviceBuffer<float> dout(want.size());
    cuda::Embedding(bf16 ? static_cast<const void*>(dtable_bf16.get()) : dtable.get(),
                    bf16 ? DType::kBF16 : DType::kF32, dim, dids.get(),
                    static_cast<int64_t>(ids.size()), dout.get(), stream.get());
    const auto got = dout.Download();
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_TRUE(SameFloat(got[i], want[i])) << "bf16=" << bf16 << " value " << i;
  }
}

TEST(CudaOps, DequantRowsIsExactForEveryTableDtype) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(5);
  Stream stream;
  const int d = 64;
  std::uniform_int_distribution<int> byte(0, 255);
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3}) {
    const int64_t packed_bytes =
        static_cast<int64_t>(d) * DTypeSize(t) + (t == DType::kF8E4M3 ? d / kFp8BlockSize : 0);
    const int64_t packed_rows = 9;
    std::vector<uint8_t> packed(packed_rows * packed_bytes);
    for (auto& b : packed) b = static_cast<uint8_t>(byte(rng));
    // Output rows pick packed rows out of order and repeat some (one gathered copy of a step's
    // unique rows serving several tokens).
    const std::vector<int32_t> src_row = {4, 0, 8, 4, 1, 1, 7};
    std::vector<float> want(src_row.size() * d);
    for (size_t r = 0; r < src_row.size(); ++r) {
      const uint8_t* row = packed.data() + src_row[r] * packed_bytes;
      DequantRow(row, row + d, t, d, want.data() + r * d);
    }
    DeviceBuffer<uint8_t> dpacked(packed);
    DeviceBuffer<int32_t> dsrc(src_row);
    DeviceBuffer<float> dout(want.size());
    cuda::DequantParams p;
    p.packed = dpacked.get();
    p.packed_bytes = packed_bytes;
    p.dtype = t;
    p.d = d;
    p.src_row = dsrc.get();
    p.rows = static_cast<int64_t>(src_row.size());
    p.out = dout.get();
    cuda::DequantRows(p, stream.get());
    const auto got = dout.Download();
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_TRUE(SameFloat(got[i], want[i])) << DTypeToConfig(t) << " value " << i;
  }
}

TEST(CudaOps, ConvertToBf16RoundsLikeTheHost) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(6);
  Stream stream;
  auto x = RandomNormal(10007, rng, 100.0f);
  x[0] = 0.0f;
  x[1] = -0.0f;
  x[2] = INFINITY;
  x[3] = 3.0e38f;  // rounds up to infinity
  x[4] = 1e-40f;   // denormal
  DeviceBuffer<float> dx(x);
  DeviceBuffer<uint16_t> dout(x.size());
  cuda::ConvertToBf16(dx.get(), static_cast<int64_t>(x.size()), dout.get(), stream.get());
  const auto got = dout.Download();
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], FloatToBf16(x[i])) << "value " << i;
}

}  // namespace
}  // namespace engram
