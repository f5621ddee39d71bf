// Row math written once for both backends (DESIGN §4): RMSNorm of a row, rotate-half RoPE of a
// head, the Engram gate, SiLU, the online softmax of attention, and row dequantisation. The CPU
// backend calls these in its loops; the CUDA kernels call the same functions (or their per-value
// pieces) per thread, so CPU tests cover the GPU's math.
#pragma once

#include <cmath>
#include <cstdint>

#include "engram/kernels/dtype.h"
#include "engram/kernels/host_device.h"

namespace engram {

// float32 machine epsilon: the eps PyTorch uses for an RMSNorm built without one (the Engram
// reference's key/query norms).
inline constexpr float kFloat32Eps = 1.1920928955078125e-07f;

ENGRAM_HD float Silu(float x) { return x / (1.0f + expf(-x)); }
ENGRAM_HD float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// The two ends of an RMSNorm, split out so a kernel that reduces the sum of squares across a
// thread block finishes it with the same float operations as the CPU's sequential loop.
ENGRAM_HD float RmsInvScaleFromSumSq(float sum_sq, int n, float eps) {
  const float mean = sum_sq / static_cast<float>(n);
  return 1.0f / sqrtf(mean + eps);
}
ENGRAM_HD float RmsNormValue(float x, float inv_scale, float w) { return x * inv_scale * w; }

// 1 / sqrt(mean(x^2) + eps), accumulated in float like PyTorch's float32 RMSNorm.
ENGRAM_HD float RmsInvScale(const float* x, int n, float eps) {
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i] * x[i];
    s1 += x[i + 1] * x[i + 1];
    s2 += x[i + 2] * x[i + 2];
    s3 += x[i + 3] * x[i + 3];
  }
  for (; i < n; ++i) s0 += x[i] * x[i];
  return RmsInvScaleFromSumSq((s0 + s1) + (s2 + s3), n, eps);
}

// y = x * rsqrt(mean(x^2) + eps) * w. y may alias x.
ENGRAM_HD void RmsNormRow(const float* x, const float* w, int n, float eps, float* y) {
  const float inv = RmsInvScale(x, n, eps);
  for (int i = 0; i < n; ++i) y[i] = RmsNormValue(x[i], inv, w[i]);
}

// One rotated pair (x[i], x[i + dim/2]) of RopeHead; a kernel gives each pair its own thread.
ENGRAM_HD void RopePair(float* lo, float* hi, int64_t pos, float inv_freq) {
  const float angle = static_cast<float>(pos) * inv_freq;
  const float c = cosf(angle), s = sinf(angle);
  const float a = *lo, b = *hi;
  *lo = a * c - b * s;
  *hi = b * c + a * s;
}

// Rotate-half RoPE of one head in place: dimension i pairs with i + dim/2, and pair i turns by
// pos * theta^(-2i/dim). `inv_freq` holds theta^(-2i/dim) for i < dim/2.
ENGRAM_HD void RopeHead(float* x, int dim, int64_t pos, const float* inv_freq) {
  const int half = dim / 2;
  for (int i = 0; i < half; ++i) RopePair(x + i, x + i + half, pos, inv_freq[i]);
}

// The Engram gate of one token and branch (DESIGN §2.1.6), given the two normalised vectors:
// s = <q, k> / sqrt(D); alpha = sigmoid(sign(s) * sqrt(max(|s|, 1e-6))).
ENGRAM_HD float EngramGateFromDot(float dot, int hidden) {
  const float s = dot / sqrtf(static_cast<float>(hidden));
  const float mag = sqrtf(fmaxf(fabsf(s), 1e-6f));
  const float signed_mag = s > 0.f ? mag : (s < 0.f ? -mag : 0.f);
  return Sigmoid(signed_mag);
}

// Value i of a packed table row, for kernels that give each value its own thread. Equal to
// DequantRow's out[i] for every dtype (tests/cuda/row_math_shared_test.cc checks it).
ENGRAM_HD float DequantValue(const void* row, const uint8_t* scales, DType dtype, int i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(row)[i];
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(row)[i]);
    case DType::kF16:
      return F16ToFloat(static_cast<const uint16_t*>(row)[i]);
    case DType::kF8E4M3:
      return Fp8E4M3ToFloat(static_cast<const uint8_t*>(row)[i]) *
             Ue8m0ToFloat(scales[i / kFp8BlockSize]);
    default:
      return 0.f;  // unreachable: dtypes are validated at load
  }
}

// Online softmax (one pass over a stream of scores, as flash attention computes it): the running
// maximum and the sum of exp(score - max). Attention kernels keep one per head and fold partial
// states of different warps or blocks together with SoftmaxMerge.
struct SoftmaxState {
  float max;
  float sum;
};
ENGRAM_HD SoftmaxState SoftmaxEmpty() { return SoftmaxState{-INFINITY, 0.f}; }

// exp(from - to), with from = -inf (an empty state, a masked score) giving 0 instead of NaN.
ENGRAM_HD float SoftmaxRescale(float from, float to) {
  return from == -INFINITY ? 0.f : expf(from - to);
}

// Adds one score. Returns the factor every accumulation made so far (sum and the weighted sum of
// values) must be multiplied by; *weight gets this score's weight exp(score - new max).
ENGRAM_HD float SoftmaxPush(SoftmaxState* st, float score, float* weight) {
  const float new_max = fmaxf(st->max, score);
  const float scale = SoftmaxRescale(st->max, new_max);
  *weight = SoftmaxRescale(score, new_max);
  st->sum = st->sum * scale + *weight;
  st->max = new_max;
  return scale;
}

// Folds b into a; the accumulators that went with a and b are scaled by *scale_a and *scale_b.
ENGRAM_HD void SoftmaxMerge(SoftmaxState* a, SoftmaxState b, float* scale_a, float* scale_b) {
  const float new_max = fmaxf(a->max, b.max);
  if (new_max == -INFINITY) {
    *scale_a = *scale_b = 0.f;
    return;
  }
  *scale_a = SoftmaxRescale(a->max, new_max);
  *scale_b = SoftmaxRescale(b.max, new_max);
  a->sum = a->sum * *scale_a + b.sum * *scale_b;
  a->max = new_max;
}

// Dequantises one table row of `d` values to float. `scales` (fp8 only) holds d/32 ue8m0 bytes.
ENGRAM_HD void DequantRow(const void* row, const uint8_t* scales, DType dtype, int d, float* out) {
  switch (dtype) {
    case DType::kF32: {
      const float* r = static_cast<const float*>(row);
      for (int i = 0; i < d; ++i) out[i] = r[i];
      break;
    }
    case DType::kBF16: {
      const uint16_t* r = static_cast<const uint16_t*>(row);
      for (int i = 0; i < d; ++i) out[i] = Bf16ToFloat(r[i]);
      break;
    }
    case DType::kF16: {
      const uint16_t* r = static_cast<const uint16_t*>(row);
      for (int i = 0; i < d; ++i) out[i] = F16ToFloat(r[i]);
      break;
    }
    case DType::kF8E4M3: {
      const uint8_t* r = static_cast<const uint8_t*>(row);
      for (int b = 0; b < d / kFp8BlockSize; ++b) {
        const float scale = Ue8m0ToFloat(scales[b]);
        for (int i = b * kFp8BlockSize; i < (b + 1) * kFp8BlockSize; ++i)
          out[i] = Fp8E4M3ToFloat(r[i]) * scale;
      }
      break;
    }
    default:
      for (int i = 0; i < d; ++i) out[i] = 0.f;  // unreachable: dtypes are validated at load
  }
}

}  // namespace engram
