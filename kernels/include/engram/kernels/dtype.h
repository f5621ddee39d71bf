// Element types of weights and Engram tables, and their exact conversions to float.
// fp8 e4m3 (OCP "e4m3fn": no infinities, 0x7f/0xff are NaN) carries one ue8m0 scale byte per
// 32 values, the block-scaled layout production Engram tables use.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "engram/kernels/host_device.h"

namespace engram {

enum class DType : uint8_t { kF32, kF64, kBF16, kF16, kF8E4M3, kU8, kI8, kI16, kI32, kI64, kBool };

// Bytes per element.
constexpr int DTypeSize(DType t) {
  switch (t) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
    case DType::kI16:
      return 2;
    default:
      return 1;
  }
}

// safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
std::optional<DType> DTypeFromSafetensors(std::string_view s);
std::string_view DTypeToSafetensors(DType t);
// config.json spelling ("float32", "bfloat16", "float16", "float8_e4m3").
std::optional<DType> DTypeFromConfig(std::string_view s);
std::string_view DTypeToConfig(DType t);

constexpr int kFp8BlockSize = 32;  // values per ue8m0 scale byte

ENGRAM_HD float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

ENGRAM_HD uint32_t FloatToBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

ENGRAM_HD float Bf16ToFloat(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }

// Round to nearest even, NaN kept quiet.
ENGRAM_HD uint16_t FloatToBf16(float f) {
  uint32_t b = FloatToBits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x40);
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(b >> 16);
}

ENGRAM_HD float F16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // Subnormal: man * 2^-24, exact in float.
    float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (exp == 31) return BitsToFloat(sign | 0x7f800000u | (man << 13));
  return BitsToFloat(sign | ((exp + 112u) << 23) | (man << 13));
}

// Round to nearest even with overflow to infinity.
ENGRAM_HD uint16_t FloatToF16(float f) {
  const uint32_t b = FloatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
  const uint32_t abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (abs < 0x38800000u) {                        // below 2^-14: subnormal or zero
    const float a = BitsToFloat(abs);
    // Multiply by 2^24 so the subnormal step becomes 1, then round to nearest even.
    const float scaled = a * 16777216.0f;
    uint32_t q = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t v = abs - (112u << 23);
  v += 0xfffu + ((v >> 13) & 1u);
  return sign | static_cast<uint16_t>(v >> 13);
}

ENGRAM_HD float Fp8E4M3ToFloat(uint8_t x) {
  const uint32_t sign = static_cast<uint32_t>(x & 0x80u) << 24;
  const uint32_t exp = (x >> 3) & 0xfu;
  const uint32_t man = x & 0x7u;
  if (exp == 0xf && man == 0x7) return BitsToFloat(sign | 0x7fc00000u);  // NaN
  if (exp == 0) {
    const float v = static_cast<float>(man) * 0.001953125f;  // man * 2^-9
    return sign ? -v : v;
  }
  return BitsToFloat(sign | ((exp + 120u) << 23) | (man << 20));
}

// Saturating round to nearest even (max finite 448), as fp8 training recipes quantize.
ENGRAM_HD uint8_t FloatToFp8E4M3(float f) {
  const uint32_t b = FloatToBits(f);
  const uint8_t sign = static_cast<uint8_t>((b >> 24) & 0x80u);
  const uint32_t abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7f;
  const float a = BitsToFloat(abs);
  if (a >= 464.0f) return sign | 0x7e;  // saturate (464 is the rounding midpoint above 448)
  if (a < 0.015625f) {                  // below 2^-6: subnormal step 2^-9
    const float scaled = a * 512.0f;
    uint32_t q = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return sign | static_cast<uint8_t>(q);  // q == 8 is exactly the smallest normal
  }
  uint32_t v = abs - (120u << 23);
  v += 0x7ffffu + ((v >> 20) & 1u);
  v >>= 20;
  if (v > 0x7e) v = 0x7e;
  return sign | static_cast<uint8_t>(v);
}

// ue8m0: an unsigned power-of-two exponent with bias 127 (0xff is NaN).
ENGRAM_HD float Ue8m0ToFloat(uint8_t e) {
  if (e == 0xff) return BitsToFloat(0x7fc00000u);
  if (e == 0) return BitsToFloat(0x00400000u);  // 2^-127, a float subnormal
  return BitsToFloat(static_cast<uint32_t>(e) << 23);
}

}  // namespace engram
