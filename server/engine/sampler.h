// Token sampling with the parameters users know from vLLM and TGI. Each sequence owns its random
// stream, seeded per request, so a seeded request gives the same tokens whatever else shares the
// batch. Order of operations (as in vLLM/HF): penalties on raw logits, temperature, then top-k,
// top-p and min-p on the softmax; temperature 0 is greedy.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "engram/kernels/sampling_math.h"

namespace engram {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;  // (0, 1]
  int top_k = 0;       // 0 = off
  float min_p = 0.0f;  // [0, 1]
  float repetition_penalty =
      1.0f;                       // > 0; 1 = off (HF: divides positive logits, multiplies negative)
  float presence_penalty = 0.0f;  // subtracted once per token seen in the output
  float frequency_penalty = 0.0f;  // subtracted per occurrence in the output
  std::optional<uint64_t> seed;
};

// splitmix64-seeded xoshiro256**: small, fast, identical on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  double Uniform();  // [0, 1)

 private:
  Xoshiro256 st_;
};

class Sampler {
 public:
  // `prompt` feeds the repetition penalty; penalties for generated tokens are tracked by Accept.
  Sampler(const SamplingParams& p, std::span<const int32_t> prompt, uint64_t fallback_seed);

  // Picks the next token from one row of logits (modified in place).
  int32_t Sample(std::span<float> logits);
  // Records a generated token for the penalties.
  void Accept(int32_t token);

 private:
  SamplingParams p_;
  Rng rng_;
  std::unordered_map<int32_t, int> output_counts_;
  std::vector<int32_t> seen_;   // prompt and output tokens, for the repetition penalty
  std::vector<int32_t> order_;  // scratch
  std::vector<float> probs_;    // scratch
};

}  // namespace engram
