// The cuBLASLt bf16 GEMM against CpuBackend::Linear: decode (m = 1), small and prefill-sized
// batches, with and without bias, float and bf16 output. cuBLASLt is loaded with dlopen; on a
// machine with a device but without libcublasLt.so.13 the test fails and says so (a GPU machine
// must be able to run the GEMMs).
//
// Tolerance. Activations are rounded to bf16 on the device (ConvertToBf16), so the CPU reference
// gets the same rounded values as floats, and both sides multiply identical bf16 numbers. A
// product of two bf16 values (8-bit significands) is exact in float, so only the k-term fp32
// accumulation differs: each side is within k u sum|x_i w_i| of the exact sum (u = 2^-24).
// Tensor cores may keep fewer guard bits than an IEEE float add, so the device side is allowed
// 4k u; with the CPU's k u that is 5 k u sum|x w|, plus u |bias| for the epilogue's add. A bf16
// output adds one rounding to 8 significant bits: 2^-9 |y|, i.e. the relative 2^-8 per value
// of bf16 halved by round-to-nearest (2^-8 |y| is allowed, for the reference's own error).
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "tests/cuda/cuda_test_util.h"

namespace engram {
namespace {

using cuda::testing::DeviceBuffer;
using cuda::testing::kU;
using cuda::testing::RandomNormal;
using cuda::testing::Stream;

TEST(CudaGemm, Bf16MatchesCpuLinear) {
  ENGRAM_REQUIRE_CUDA_DEVICE();
  std::string error;
  auto gemm = cuda::CublasLtGemm::Create(&error);
  ASSERT_NE(gemm, nullptr) << error;
  std::mt19937 rng(31);
  CpuBackend cpu(2);
  Stream stream;
  struct Case {
    int64_t m, n, k;
  };
  for (const Case& c : {Case{1, 264, 520}, Case{7, 64, 128}, Case{300, 1032, 264}}) {
    const auto x = RandomNormal(c.m * c.k, rng), w = RandomNormal(c.n * c.k, rng, 0.05f);
    const auto bias = RandomNormal(c.n, rng);
    std::vector<uint16_t> w_bf16(w.size());
    for (size_t i = 0; i < w.size(); ++i) w_bf16[i] = FloatToBf16(w[i]);
    std::vector<float> x_rounded(x.size());
    for (size_t i = 0; i < x.size(); ++i) x_rounded[i] = Bf16ToFloat(FloatToBf16(x[i]));

    DeviceBuffer<float> dx(x), dbias(bias);
    DeviceBuffer<uint16_t> dx_bf16(x.size()), dw(w_bf16);
    cuda::ConvertToBf16(dx.get(), static_cast<int64_t>(x.size()), dx_bf16.get(), stream.get());

    for (bool with_bias : {false, true}) {
      for (DType out : {DType::kF32, DType::kBF16}) {
        if (out == DType::kBF16 && !with_bias) continue;  // one bf16 case covers the epilogue
        std::vector<float> want(c.m * c.n);
        const Matrix mat{w_bf16.data(), DType::kBF16, c.n, c.k};
        cpu.Linear(x_rounded.data(), c.m, mat, with_bias ? bias.data() : nullptr, want.data());

        DeviceBuffer<float> y32(c.m * c.n);
        DeviceBuffer<uint16_t> y16(c.m * c.n);
        cuda::GemmArgs a;
        a.m = c.m;
        a.n = c.n;
        a.k = c.k;
        a.x = dx_bf16.get();
        a.w = dw.get();
        a.bias = with_bias ? dbias.get() : nullptr;
        a.out_dtype = out;
        a.y = out == DType::kF32 ? static_cast<void*>(y32.get()) : static_cast<void*>(y16.get());
        const std::string run_error = gemm->Run(a, stream.get());
        ASSERT_TRUE(run_error.empty()) << run_error;
        std::vector<float> got(c.m * c.n);
        if (out == DType::kF32) {
          got = y32.Download();
        } else {
          const auto raw = y16.Download();
          for (size_t i = 0; i < raw.size(); ++i) got[i] = Bf16ToFloat(raw[i]);
        }
        for (int64_t r = 0; r < c.m; ++r)
          for (int64_t j = 0; j < c.n; ++j) {
            double mag = 0;
            for (int64_t i = 0; i < c.k; ++i)
              mag += std::fabs(double(x_rounded[r * c.k + i]) * Bf16ToFloat(w_bf16[j * c.k + i]));
            const double y = want[r * c.n + j];
            double tol = 5.0 * c.k * kU * mag + (with_bias ? kU * std::fabs(bias[j]) : 0.0);
            if (out == DType::kBF16) tol += std::ldexp(std::fabs(y), -8);
            ASSERT_NEAR(got[r * c.n + j], y, tol + 1e-30)
                << "m=" << c.m << " n=" << c.n << " k=" << c.k << " bias=" << with_bias
                << " out=" << DTypeToConfig(out) << " at (" << r << ", " << j << ")";
          }
      }
    }
  }
}

TEST(CudaGemm, CreateSaysWhyWhenItCannot) {
  // Runs everywhere: on a machine without a device or without libcublasLt, Create must fail
  // with a reason instead of crashing; with both, it must succeed.
  std::string error;
  auto gemm = cuda::CublasLtGemm::Create(&error);
  if (gemm == nullptr) {
    EXPECT_FALSE(error.empty());
    const CudaProbe probe = ProbeCudaDevices();
    if (probe.device_count == 0)
      GTEST_SKIP() << "no CUDA device (" << probe.error << "): " << error;
    FAIL() << "a CUDA device is present but cuBLASLt is unusable: " << error;
  }
  EXPECT_FALSE(gemm->library().empty());
}

}  // namespace
}  // namespace engram
