// Log-probabilities of the raw model distribution (log-softmax of the logits before penalties,
// temperature and truncation), as vLLM reports them by default.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "server/engine/request.h"

namespace engram {

struct TopLogprobs {
  std::vector<TopLogprob> top;              // the n most likely tokens, most likely first
  const std::vector<float>* raw = nullptr;  // the untouched logits row
  double log_z = 0;                         // log of the softmax normaliser

  TokenLogprob For(int32_t token) const;
};

// Copies `logits` into `scratch` (sampling edits the row afterwards) and finds the top n.
TopLogprobs ComputeTopLogprobs(std::span<const float> logits, int n, std::vector<float>& scratch);

}  // namespace engram
