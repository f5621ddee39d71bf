// Row math written once for both backends (DESIGN §4): RMSNorm of a row, rotate-half RoPE of a
// head, the Engram gate, SiLU, and row dequantisation. The CPU backend calls these in its loops;
// the CUDA kernels call the same functions per thread, so CPU tests cover the GPU's math.
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
  const float mean = ((s0 + s1) + (s2 + s3)) / static_cast<float>(n);
  return 1.0f / sqrtf(mean + eps);
}

// y = x * rsqrt(mean(x^2) + eps) * w. y may alias x.
ENGRAM_HD void RmsNormRow(const float* x, const float* w, int n, float eps, float* y) {
  const float inv = RmsInvScale(x, n, eps);
  for (int i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
}

// Rotate-half RoPE of one head in place: dimension i pairs with i + dim/2, and pair i turns by
// pos * theta^(-2i/dim). `inv_freq` holds theta^(-2i/dim) for i < dim/2.
ENGRAM_HD void RopeHead(float* x, int dim, int64_t pos, const float* inv_freq) {
  const int half = dim / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];
    const float c = cosf(angle), s = sinf(angle);
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

// The Engram gate of one token and branch (DESIGN §2.1.6), given the two normalised vectors:
// s = <q, k> / sqrt(D); alpha = sigmoid(sign(s) * sqrt(max(|s|, 1e-6))).
ENGRAM_HD float EngramGateFromDot(float dot, int hidden) {
  const float s = dot / sqrtf(static_cast<float>(hidden));
  const float mag = sqrtf(fmaxf(fabsf(s), 1e-6f));
  const float signed_mag = s > 0.f ? mag : (s < 0.f ? -mag : 0.f);
  return Sigmoid(signed_mag);
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
