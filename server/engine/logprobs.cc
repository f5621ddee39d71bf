#include "server/engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace engram {

TokenLogprob TopLogprobs::For(int32_t token) const {
  TokenLogprob t;
  t.token = token;
  t.logprob = static_cast<float>((*raw)[static_cast<size_t>(token)] - log_z);
  t.top = top;
  return t;
}

TopLogprobs ComputeTopLogprobs(std::span<const float> logits, int n, std::vector<float>& scratch) {
  scratch.assign(logits.begin(), logits.end());
  TopLogprobs r;
  r.raw = &scratch;
  const float mx = *std::max_element(scratch.begin(), scratch.end());
  double sum = 0;
  for (float v : scratch) sum += std::exp(static_cast<double>(v - mx));
  r.log_z = mx + std::log(sum);
  n = std::min<int>(n, static_cast<int>(scratch.size()));
  std::vector<int32_t> idx(scratch.size());
  std::iota(idx.begin(), idx.end(), 0);
  // Ties break towards the lower id so the list is deterministic.
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) {
    return scratch[static_cast<size_t>(a)] > scratch[static_cast<size_t>(b)] ||
           (scratch[static_cast<size_t>(a)] == scratch[static_cast<size_t>(b)] && a < b);
  });
  for (int i = 0; i < n; ++i)
    r.top.push_back(
        {idx[static_cast<size_t>(i)],
         static_cast<float>(scratch[static_cast<size_t>(idx[static_cast<size_t>(i)])] - r.log_z)});
  return r;
}

}  // namespace engram
