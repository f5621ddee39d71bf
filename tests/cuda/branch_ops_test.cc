// The branch-stream and row ops of kernels/cuda/ops.h (BroadcastBranches, BranchMean,
// AddToBranches, GatherRows, StoreRows) against plain CPU loops on random inputs. Every result
// must be bit-identical:
//  - Broadcast, Gather and Store only move floats; AddToBranches is one float add per value, the
//    same correctly rounded operation on both sides.
//  - BranchMean: the reference adds in float from 0 in order m = 0..M-1 and divides by float(M),
//    as the kernel does (and CpuBackend); each step is one correctly rounded IEEE operation
//    (nvcc keeps adds unfused and the division IEEE without fast math), so equal inputs give
//    equal bits. With M == 1 both are a plain copy, -0 included.
// Outputs start poisoned (0xff bytes, a NaN), so a value a kernel forgot fails, and so does a
// value written where it must not be (padding, nullptr destinations, empty calls). Each op runs
// at dims that are and are not multiples of 4 and from bases offset by one float, so both the
// float4 and the float paths are covered.
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::testing::DeviceBuffer;
using cuda::testing::RandomNormal;
using cuda::testing::SameFloat;
using cuda::testing::Stream;

struct Shape {
  int64_t rows;
  int branches;
  int dim;
};
constexpr Shape kShapes[] = {{5, 1, 64}, {7, 4, 100}, {3, 4, 1001}, {2, 3, 7}, {300, 4, 2048}};

bool IsPoison(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits == 0xffffffffu;
}

// `offset` floats of poison, then `values`: the device copy starts at get() + offset.
std::vector<float> WithOffset(const std::vector<float>& values, int offset) {
  std::vector<float> out(offset, 0.f);
  std::memset(out.data(), 0xff, out.size() * sizeof(float));
  out.insert(out.end(), values.begin(), values.end());
  return out;
}

// got[offset + i] == want[i] bitwise, and got[0..offset) still poisoned.
::testing::AssertionResult Exact(const std::vector<float>& got, const std::vector<float>& want,
                                 int offset, const char* what, const Shape& s) {
  if (got.size() != want.size() + offset)
    return ::testing::AssertionFailure() << what << ": size " << got.size();
  for (int i = 0; i < offset; ++i)
    if (!IsPoison(got[i])) return ::testing::AssertionFailure() << what << ": padding " << i;
  for (size_t i = 0; i < want.size(); ++i)
    if (!SameFloat(got[offset + i], want[i]))
      return ::testing::AssertionFailure()
             << what << " rows " << s.rows << " M " << s.branches << " dim " << s.dim << " offset "
             << offset << " value " << i << ": got " << got[offset + i] << " want " << want[i];
  return ::testing::AssertionSuccess();
}

TEST(CudaBranchOps, BroadcastBranchesIsExact) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(11);
  Stream stream;
  for (const Shape& s : kShapes) {
    for (int offset : {0, 1}) {
      const int64_t M = s.branches, D = s.dim;
      const auto x = RandomNormal(s.rows * D, rng);
      std::vector<float> want(s.rows * M * D);
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t m = 0; m < M; ++m)
          for (int64_t j = 0; j < D; ++j) want[(r * M + m) * D + j] = x[r * D + j];
      DeviceBuffer<float> dx(WithOffset(x, offset)), dh(want.size() + offset);
      cuda::BroadcastBranches(dx.get() + offset, s.rows, s.branches, s.dim, dh.get() + offset,
                              stream.get());
      ASSERT_TRUE(Exact(dh.Download(), want, offset, "BroadcastBranches", s));
    }
  }
}

TEST(CudaBranchOps, BranchMeanIsExactInCpuOrder) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(12);
  Stream stream;
  for (const Shape& s : kShapes) {
    for (int offset : {0, 1}) {
      const int64_t M = s.branches, D = s.dim;
      auto h = RandomNormal(s.rows * M * D, rng, 3.0f);
      h[0] = -0.f;  // M == 1 must copy it as is; a sum from +0 would give +0
      std::vector<float> want(s.rows * D);
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t j = 0; j < D; ++j) {
          if (M == 1) {
            want[r * D + j] = h[r * D + j];
            continue;
          }
          float sum = 0.f;
          for (int64_t m = 0; m < M; ++m) sum += h[(r * M + m) * D + j];
          want[r * D + j] = sum / static_cast<float>(M);
        }
      DeviceBuffer<float> dh(WithOffset(h, offset)), dx(want.size() + offset);
      cuda::BranchMean(dh.get() + offset, s.rows, s.branches, s.dim, dx.get() + offset,
                       stream.get());
      ASSERT_TRUE(Exact(dx.Download(), want, offset, "BranchMean", s));
    }
  }
}

TEST(CudaBranchOps, AddToBranchesIsExact) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(13);
  Stream stream;
  for (const Shape& s : kShapes) {
    for (int offset : {0, 1}) {
      const int64_t M = s.branches, D = s.dim;
      const auto h = RandomNormal(s.rows * M * D, rng, 2.0f);
      const auto delta = RandomNormal(s.rows * D, rng, 0.5f);
      std::vector<float> want = h;
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t m = 0; m < M; ++m)
          for (int64_t j = 0; j < D; ++j) want[(r * M + m) * D + j] += delta[r * D + j];
      DeviceBuffer<float> dh(WithOffset(h, offset)), dd(WithOffset(delta, offset));
      cuda::AddToBranches(dd.get() + offset, s.rows, s.branches, s.dim, dh.get() + offset,
                          stream.get());
      ASSERT_TRUE(Exact(dh.Download(), want, offset, "AddToBranches", s));
    }
  }
}

TEST(CudaBranchOps, GatherRowsIsExactWithRepeatedIndices) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(14);
  Stream stream;
  const int64_t src_rows = 10;
  for (int dim : {64, 100, 7, 1001}) {
    for (int offset : {0, 1}) {
      // More outputs than source rows, so indices repeat; the first and last rows included.
      std::vector<int32_t> index = {0, 9, 3, 3, 3, 9, 0};
      std::uniform_int_distribution<int32_t> pick(0, src_rows - 1);
      for (int i = 0; i < 25; ++i) index.push_back(pick(rng));
      const int64_t n = static_cast<int64_t>(index.size());
      const auto x = RandomNormal(src_rows * dim, rng);
      std::vector<float> want(n * dim);
      for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < dim; ++j)
          want[i * dim + j] = x[index[i] * static_cast<int64_t>(dim) + j];
      DeviceBuffer<float> dx(WithOffset(x, offset)), dout(want.size() + offset);
      DeviceBuffer<int32_t> dindex(index);
      cuda::GatherRows(dx.get() + offset, dindex.get(), n, dim, dout.get() + offset, stream.get());
      ASSERT_TRUE(Exact(dout.Download(), want, offset, "GatherRows", Shape{n, 1, dim}));
    }
  }
}

TEST(CudaBranchOps, StoreRowsWritesOnlyNonNullDestinations) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::mt19937 rng(15);
  Stream stream;
  const int64_t rows = 7;
  for (int dim : {64, 100, 7, 1001}) {
    for (int src_offset : {0, 1}) {
      // Row r goes to slot slot_of[r] of a poisoned buffer of slots wider than a row (the tail
      // of each slot must stay poisoned); -1 = nullptr. Rows 2 and 5 land one float into their
      // slot, so aligned and misaligned destinations mix in one call.
      const int64_t slot = dim + 8;
      const std::vector<int> slot_of = {3, -1, 0, 6, -1, 1, 4};
      const auto src = RandomNormal(rows * dim, rng);
      DeviceBuffer<float> dsrc(WithOffset(src, src_offset)), ddst(8 * slot);
      std::vector<float*> dst(rows, nullptr);
      std::vector<float> want(8 * slot);
      std::memset(want.data(), 0xff, want.size() * sizeof(float));
      for (int64_t r = 0; r < rows; ++r) {
        if (slot_of[r] < 0) continue;
        const int64_t begin = slot_of[r] * slot + (r == 2 || r == 5 ? 1 : 0);
        dst[r] = ddst.get() + begin;
        for (int j = 0; j < dim; ++j) want[begin + j] = src[r * dim + j];
      }
      DeviceBuffer<float*> ddst_ptrs(dst);
      cuda::StoreRows(dsrc.get() + src_offset, rows, dim, ddst_ptrs.get(), stream.get());
      // want keeps poison everywhere no row was stored: unused slots, slot tails, skipped rows.
      ASSERT_TRUE(Exact(ddst.Download(), want, 0, "StoreRows", Shape{rows, 1, dim}));
    }
  }
}

TEST(CudaBranchOps, EmptyCallsLaunchNothing) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  Stream stream;
  const int M = 4, D = 64;
  DeviceBuffer<float> x(D), h(M * D);
  DeviceBuffer<int32_t> index(std::vector<int32_t>{0});
  DeviceBuffer<float*> dst(std::vector<float*>{h.get()});
  cuda::BroadcastBranches(x.get(), 0, M, D, h.get(), stream.get());
  cuda::AddToBranches(x.get(), 0, M, D, h.get(), stream.get());
  cuda::StoreRows(x.get(), 0, D, dst.get(), stream.get());
  cuda::BranchMean(h.get(), 0, M, D, x.get(), stream.get());
  cuda::BranchMean(h.get(), 0, 1, D, x.get(), stream.get());
  cuda::GatherRows(h.get(), index.get(), 0, D, x.get(), stream.get());
  stream.Sync();
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (const auto& buf : {x.Download(), h.Download()})
    for (size_t i = 0; i < buf.size(); ++i) ASSERT_TRUE(IsPoison(buf[i])) << i;
}

}  // namespace
}  // namespace engram
