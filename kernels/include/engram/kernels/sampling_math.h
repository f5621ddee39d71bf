// The per-value arithmetic of token sampling, written once for the host and the device so a
// seeded request draws the same token on the CPU and the GPU. It mirrors the engine's sampler
// (server/engine/sampler.cc) operation for operation: the RNG is its splitmix64-seeded
// xoshiro256**, the penalties and the candidate weights use the same float operations, and the
// candidate order is the same (logit descending, token id ascending on ties).
// tests/cuda/row_math_shared_test.cc checks every function here against the engine's Sampler and
// Rng on the CPU, so the device kernels inherit that check.
#pragma once

#include <cmath>
#include <cstdint>

#include "engram/kernels/dtype.h"
#include "engram/kernels/host_device.h"

namespace engram {

// xoshiro256** state, seeded by splitmix64 (the engine's Rng, as a plain struct the device can
// keep per sequence).
struct Xoshiro256 {
  uint64_t s[4];
};

// One sequence's sampling parameters as the sampling ops take them (the engine's SamplingParams
// without the seed, which lives on in the sequence's Xoshiro256 state).
struct SamplingRow {
  float temperature = 1.0f;  // <= 0: greedy (lowest id on ties)
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t top_k = 0;  // 0 = off
};

ENGRAM_HD uint64_t SplitMix64Next(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

ENGRAM_HD Xoshiro256 XoshiroSeed(uint64_t seed) {
  Xoshiro256 st;
  for (int i = 0; i < 4; ++i) st.s[i] = SplitMix64Next(&seed);
  return st;
}

ENGRAM_HD uint64_t XoshiroRotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

ENGRAM_HD uint64_t XoshiroNext(Xoshiro256* st) {
  uint64_t* s = st->s;
  const uint64_t result = XoshiroRotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = XoshiroRotl(s[3], 45);
  return result;
}

// [0, 1) with 53 random bits, as Rng::Uniform.
ENGRAM_HD double XoshiroUniform(Xoshiro256* st) {
  return static_cast<double>(XoshiroNext(st) >> 11) * 0x1.0p-53;
}

// Host code is compiled with -ffp-contract=off (ISO C++ mode), but nvcc contracts a * b + c into
// one fused multiply-add by default; the _rn intrinsics keep the device from fusing where a
// fused result would round differently from the CPU's two roundings.
ENGRAM_HD float MulNoFma(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

// HF repetition penalty: divides positive logits, multiplies the others.
ENGRAM_HD float RepetitionPenalized(float logit, float penalty) {
  return logit > 0 ? logit / penalty : logit * penalty;
}

// presence + frequency * count, subtracted once per token seen in the output.
ENGRAM_HD float PresenceFrequencyPenalized(float logit, float presence, float frequency,
                                           int count) {
  return logit - (presence + MulNoFma(frequency, static_cast<float>(count)));
}

// The unnormalised probability of a candidate: exp((logit - max) / T) rounded to float. The
// engine evaluates it with the C library's expf; the device evaluates exp in double and rounds
// once, which gives the correctly rounded float (CUDA's own expf is off by up to 2 ulp). glibc's
// expf also works in double and rounds once, so the two differ only where the exact value lies
// very close to a rounding midpoint, and then by one unit in the last place
// (row_math_shared_test.cc measures how often; sampling_test.cc what it does to a draw).
ENGRAM_HD float CandidateWeight(float logit, float max_logit, float temperature) {
  const float x = (logit - max_logit) / temperature;
#if defined(__CUDA_ARCH__)
  return static_cast<float>(exp(static_cast<double>(x)));
#else
  return std::exp(x);
#endif
}

// A 32-bit key whose ascending unsigned order is the sampler's candidate order: logit
// descending. -0 and +0 share a key (the sampler's comparison treats them as equal), so a stable
// sort of (key, token id) pairs in id order keeps ties in ascending id order as the sampler does.
ENGRAM_HD uint32_t DescendingLogitKey(float logit) {
  uint32_t bits = FloatToBits(logit);
  if (bits == 0x80000000u) bits = 0;  // -0 -> +0
  // Flip negatives entirely and set the sign bit of positives: unsigned order = float order.
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return ~ascending;
}

}  // namespace engram
