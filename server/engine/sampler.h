// Token sampling with the parameters users know from vLLM and TGI. Each sequence owns its random
// stream, seeded per request, so a seeded request gives the same tokens whatever else shares the
// batch. Order of operations (as in vLLM/HF): penalties on raw logits, temperature, then top-k,
// top-p and min-p on the softmax; temperature 0 is greedy.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "engram/kernels/sample_logits.h"
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

  // The state a backend's Sample op takes (Backend::Sample), so a step can sample on the device
  // and the sequence continue exactly as if this object had drawn the token.
  const SamplingRow& row() const { return row_; }
  const std::vector<int32_t>& seen() const { return seen_; }
  const std::vector<int32_t>& count_tokens() const { return count_tokens_; }
  const std::vector<int32_t>& count_values() const { return count_values_; }
  Xoshiro256& rng() { return rng_; }

 private:
  SamplingRow row_;
  Xoshiro256 rng_;
  std::vector<int32_t> seen_;          // prompt and output tokens, sorted, distinct
  std::vector<int32_t> count_tokens_;  // output tokens, sorted, distinct
  std::vector<int32_t> count_values_;  // their counts
  SampleScratch scratch_;
};

}  // namespace engram
