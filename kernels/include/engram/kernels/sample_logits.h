// The host's token sampler over one row of logits: the engine's Sampler and the CPU backend's
// Sample op both call it, so a sequence draws the same token whichever of them samples it (and
// the CUDA sampler is tested against it). Order of operations (as in vLLM/HF): penalties on raw
// logits, temperature, then top-k, top-p and min-p on the softmax; temperature <= 0 is greedy.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engram/kernels/sampling_math.h"

namespace engram {

struct SampleScratch {
  std::vector<int32_t> order;
  std::vector<float> probs;
};

// Picks a token from `logits` (penalised in place). `seen`: the distinct prompt and output
// tokens (repetition penalty); count_tokens/count_values: each distinct output token and its
// count (presence and frequency penalties). Advances `rng` once unless greedy.
int32_t SampleLogits(const SamplingRow& p, std::span<float> logits, std::span<const int32_t> seen,
                     std::span<const int32_t> count_tokens, std::span<const int32_t> count_values,
                     Xoshiro256* rng, SampleScratch* scratch);

}  // namespace engram
