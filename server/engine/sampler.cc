#include "server/engine/sampler.h"

#include <algorithm>

namespace engram {

// The state and its steps are shared with the device sampler (sampling_math.h), so a seeded
// request draws the same numbers on either.
Rng::Rng(uint64_t seed) : st_(XoshiroSeed(seed)) {}

uint64_t Rng::Next() { return XoshiroNext(&st_); }

double Rng::Uniform() { return XoshiroUniform(&st_); }

Sampler::Sampler(const SamplingParams& p, std::span<const int32_t> prompt, uint64_t fallback_seed)
    : row_{p.temperature,       p.top_p, p.min_p, p.repetition_penalty, p.presence_penalty,
           p.frequency_penalty, p.top_k},
      rng_(XoshiroSeed(p.seed.value_or(fallback_seed))),
      seen_(prompt.begin(), prompt.end()) {
  std::sort(seen_.begin(), seen_.end());
  seen_.erase(std::unique(seen_.begin(), seen_.end()), seen_.end());
}

void Sampler::Accept(int32_t token) {
  auto c = std::lower_bound(count_tokens_.begin(), count_tokens_.end(), token);
  const auto at = c - count_tokens_.begin();
  if (c == count_tokens_.end() || *c != token) {
    count_tokens_.insert(c, token);
    count_values_.insert(count_values_.begin() + at, 1);
  } else {
    ++count_values_[static_cast<size_t>(at)];
  }
  auto it = std::lower_bound(seen_.begin(), seen_.end(), token);
  if (it == seen_.end() || *it != token) seen_.insert(it, token);
}

int32_t Sampler::Sample(std::span<float> logits) {
  return SampleLogits(row_, logits, seen_, count_tokens_, count_values_, &rng_, &scratch_);
}

}  // namespace engram
