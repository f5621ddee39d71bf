#include "engram/kernels/sample_logits.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace engram {

int32_t SampleLogits(const SamplingRow& p, std::span<float> logits, std::span<const int32_t> seen,
                     std::span<const int32_t> count_tokens, std::span<const int32_t> count_values,
                     Xoshiro256* rng, SampleScratch* scratch) {
  const int32_t n = static_cast<int32_t>(logits.size());
  if (p.repetition_penalty != 1.0f) {
    for (int32_t t : seen) {
      if (t < 0 || t >= n) continue;
      float& l = logits[t];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (size_t i = 0; i < count_tokens.size(); ++i) {
      const int32_t t = count_tokens[i];
      if (t < 0 || t >= n) continue;
      logits[t] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(count_values[i]);
    }
  }
  if (p.temperature <= 0.0f) {
    // Greedy; ties go to the lowest id so the choice is deterministic.
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Candidates sorted by logit, descending; top-k trims the list before the softmax.
  std::vector<int32_t>& order = scratch->order;
  std::vector<float>& probs = scratch->probs;
  order.resize(n);
  std::iota(order.begin(), order.end(), 0);
  int32_t keep = n;
  auto before = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  if (p.top_k > 0 && p.top_k < n) {
    keep = p.top_k;
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), before);
  } else {
    std::sort(order.begin(), order.end(), before);
  }
  probs.resize(keep);
  const float mx = logits[order[0]];
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[order[i]] - mx) / p.temperature);
    sum += probs[i];
  }
  // top-p: the smallest prefix whose mass reaches top_p (always at least one token).
  if (p.top_p < 1.0f) {
    double acc = 0;
    int32_t cut = keep;
    for (int32_t i = 0; i < keep; ++i) {
      acc += probs[i] / sum;
      if (acc >= p.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  // min-p: drop tokens below min_p times the top probability.
  if (p.min_p > 0.0f) {
    const float floor = p.min_p * probs[0];
    int32_t cut = 1;
    while (cut < keep && probs[cut] >= floor) ++cut;
    keep = cut;
  }
  double total = 0;
  for (int32_t i = 0; i < keep; ++i) total += probs[i];
  double r = XoshiroUniform(rng) * total;
  for (int32_t i = 0; i < keep; ++i) {
    r -= probs[i];
    if (r < 0) return order[i];
  }
  return order[keep - 1];
}

}  // namespace engram
