#include "server/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace engram {

// The state and its steps are shared with the device sampler (sampling_math.h), so a seeded
// request draws the same numbers on either.
Rng::Rng(uint64_t seed) : st_(XoshiroSeed(seed)) {}

uint64_t Rng::Next() { return XoshiroNext(&st_); }

double Rng::Uniform() { return XoshiroUniform(&st_); }

Sampler::Sampler(const SamplingParams& p, std::span<const int32_t> prompt, uint64_t fallback_seed)
    : p_(p), rng_(p.seed.value_or(fallback_seed)), seen_(prompt.begin(), prompt.end()) {
  std::sort(seen_.begin(), seen_.end());
  seen_.erase(std::unique(seen_.begin(), seen_.end()), seen_.end());
}

void Sampler::Accept(int32_t token) {
  ++output_counts_[token];
  auto it = std::lower_bound(seen_.begin(), seen_.end(), token);
  if (it == seen_.end() || *it != token) seen_.insert(it, token);
}

int32_t Sampler::Sample(std::span<float> logits) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (p_.repetition_penalty != 1.0f) {
    for (int32_t t : seen_) {
      if (t < 0 || t >= n) continue;
      float& l = logits[t];
      l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
    }
  }
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
    for (const auto& [t, count] : output_counts_) {
      if (t < 0 || t >= n) continue;
      logits[t] -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(count);
    }
  }
  if (p_.temperature <= 0.0f) {
    // Greedy; ties go to the lowest id so the choice is deterministic.
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Candidates sorted by logit, descending; top-k trims the list before the softmax.
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), 0);
  int32_t keep = n;
  if (p_.top_k > 0 && p_.top_k < n) {
    keep = p_.top_k;
    std::partial_sort(order_.begin(), order_.begin() + keep, order_.end(),
                      [&](int32_t a, int32_t b) {
                        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                      });
  } else {
    std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
  }
  probs_.resize(keep);
  const float mx = logits[order_[0]];
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) {
    probs_[i] = std::exp((logits[order_[i]] - mx) / p_.temperature);
    sum += probs_[i];
  }
  // top-p: the smallest prefix whose mass reaches top_p (always at least one token).
  if (p_.top_p < 1.0f) {
    double acc = 0;
    int32_t cut = keep;
    for (int32_t i = 0; i < keep; ++i) {
      acc += probs_[i] / sum;
      if (acc >= p_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  // min-p: drop tokens below min_p times the top probability.
  if (p_.min_p > 0.0f) {
    const float floor = p_.min_p * probs_[0];
    int32_t cut = 1;
    while (cut < keep && probs_[cut] >= floor) ++cut;
    keep = cut;
  }
  double total = 0;
  for (int32_t i = 0; i < keep; ++i) total += probs_[i];
  double r = rng_.Uniform() * total;
  for (int32_t i = 0; i < keep; ++i) {
    r -= probs_[i];
    if (r < 0) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace engram
