// The one random number generator `engram-model create` uses. Generated models must be
// bit-identical for a seed on every machine and standard library, so nothing here touches
// std:: distributions or libm: splitmix64 seeds xoshiro256**, and "normal" values come from an
// Irwin-Hall sum of four 16-bit uniforms (mean 0, variance 1, bounded by ±2·sqrt(3)), which is
// all weight initialisation needs and costs one 64-bit draw per value.
#pragma once

#include <cstdint>
#include <string_view>

#include "engram/kernels/sampling_math.h"

namespace engram::tool {

inline uint64_t SplitMix64(uint64_t* state) { return SplitMix64Next(state); }

// Derives an independent stream seed from a base seed and up to three stream coordinates
// (tensor, layer, block), so each piece of a model can be generated on its own, in any order
// or on any thread, and still come out the same.
inline uint64_t StreamSeed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0) {
  uint64_t s = seed;
  uint64_t x = SplitMix64(&s);
  for (uint64_t v : {a, b, c}) {
    s = x ^ v;
    x = SplitMix64(&s);
  }
  return x;
}

// FNV-1a, to turn a tensor name into a stream coordinate.
inline uint64_t HashName(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char ch : name) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ull;
  }
  return h;
}

__extension__ typedef unsigned __int128 Uint128;  // __extension__: no -Wpedantic noise

class Rng {
 public:
  // The engine's generator (sampling_math.h): xoshiro256** seeded by splitmix64.
  explicit Rng(uint64_t seed) : st_(XoshiroSeed(seed)) {}

  uint64_t Next() { return XoshiroNext(&st_); }

  // Uniform in [0, bound), bound > 0 (Lemire's multiply-shift; the bias is below 2^-40 for
  // any bound used here and, more importantly, the same everywhere).
  uint64_t Below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<Uint128>(Next()) * bound) >> 64);
  }

  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  // Approximately standard normal: (sum of four U(0,1) - 2) * sqrt(3).
  float Normal() {
    const uint64_t x = Next();
    const uint32_t sum = static_cast<uint32_t>(x & 0xffff) +
                         static_cast<uint32_t>((x >> 16) & 0xffff) +
                         static_cast<uint32_t>((x >> 32) & 0xffff) + static_cast<uint32_t>(x >> 48);
    // sum / 65536 approximates the Irwin-Hall(4) variate; +2 centres each 16-bit uniform.
    constexpr float kScale = 1.7320508075688772f / 65536.0f;
    return (static_cast<float>(sum) + 2.0f - 131072.0f) * kScale;
  }

 private:
  Xoshiro256 st_;
};

}  // namespace engram::tool
