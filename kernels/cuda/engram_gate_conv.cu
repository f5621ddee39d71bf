// The Engram module after the value/key projections (DESIGN §2.1.6-8; CPU reference:
// CpuBackend::EngramGate, RmsNormBranches and ShortConv). Two kernels, split where the data
// dependency forces it:
//  - EngramGate: one block per (row, branch) does the gate and the conv's RMSNorm in one pass
//    over the row (three block reductions: the two norms' sums of squares, the dot of the
//    normalised vectors, the sum of squares of u), with row_math.h's RmsInvScaleFromSumSq,
//    RmsNormValue and EngramGateFromDot finishing every value as the CPU does.
//  - ShortConv: the causal conv reads z at earlier times, rows other blocks produce, so it waits
//    for the whole step's z: one thread per (row, channel), fused with SiLU, the gate residual
//    u + SiLU(.) and (optionally) the add into the hidden state.
#include "engram/kernels/row_math.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_util.cuh"
#include "kernels/cuda/ops.h"

namespace engram::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) EngramGateKernel(EngramGateParams p) {
  __shared__ float scratch[32];
  const int D = p.hidden, M = p.branches;
  const int64_t rm = blockIdx.x;  // row * M + m
  const int64_t r = rm / M;
  const int m = static_cast<int>(rm % M);
  const float* h = p.hidden_in + rm * D;
  const float* k = p.keys + (static_cast<int64_t>(m) * p.rows + r) * D;
  const float* v = p.value + r * D;
  const float* wq = p.query_norm + static_cast<int64_t>(m) * D;
  const float* wk = p.key_norm + static_cast<int64_t>(m) * D;

  float sq = 0.f, sk = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    sq += h[i] * h[i];
    sk += k[i] * k[i];
  }
  const float inv_q = RmsInvScaleFromSumSq(BlockSum(sq, scratch), D, kFloat32Eps);
  const float inv_k = RmsInvScaleFromSumSq(BlockSum(sk, scratch), D, kFloat32Eps);
  float dot = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x)
    dot += RmsNormValue(h[i], inv_q, wq[i]) * RmsNormValue(k[i], inv_k, wk[i]);
  const float alpha = EngramGateFromDot(BlockSum(dot, scratch), D);
  if (threadIdx.x == 0) p.gates[rm] = alpha;

  float* u = p.gated + rm * D;
  float su = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const float ui = alpha * v[i];
    u[i] = ui;
    su += ui * ui;
  }
  // Unfused (z == nullptr: the caller normalises u itself). The test is uniform over the block,
  // so skipping the reduction's barriers cannot deadlock.
  if (p.z == nullptr) return;
  const float* wz = p.conv_norm + static_cast<int64_t>(m) * D;
  const float inv_z = RmsInvScaleFromSumSq(BlockSum(su, scratch), D, p.conv_eps);
  float* z = p.z + rm * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) z[i] = RmsNormValue(alpha * v[i], inv_z, wz[i]);
}

__global__ void ShortConvKernel(ShortConvParams p) {
  const int C = p.channels, w = p.kernel;
  const int64_t n = p.rows * C;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = t / C;
    const int c = static_cast<int>(t % C);
    const float* const* taps = p.taps + r * (w - 1);
    const float* wc = p.weight + static_cast<int64_t>(c) * w;
    float y = 0.f;
    for (int i = 0; i < w - 1; ++i) {
      const float* tap = taps[i];
      if (tap != nullptr) y += wc[i] * tap[c];
    }
    y += wc[w - 1] * p.z[t];
    const float o = p.gated[t] + Silu(y);
    if (p.out != nullptr) p.out[t] = o;
    if (p.residual != nullptr) p.residual[t] += o;
  }
}

}  // namespace

void EngramGate(const EngramGateParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  EngramGateKernel<<<static_cast<unsigned>(p.rows * p.branches), kThreads, 0, stream>>>(p);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

void ShortConv(const ShortConvParams& p, cudaStream_t stream) {
  const int64_t n = p.rows * p.channels;
  if (n == 0) return;
  ShortConvKernel<<<GridStrideBlocks(n, kThreads), kThreads, 0, stream>>>(p);
  ENGRAM_CUDA_CHECK_LAUNCH();
}

}  // namespace engram::cuda
