// Random but well-behaved weights for generated models. "Well-behaved" is the whole point: a
// model for tests, the demo and benchmarks must keep activations finite over long generations,
// produce logits that are neither flat nor one-hot, and have Engram gates that differ between
// tokens, so a bug anywhere in the forward pass shows up in its outputs.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "server/model/config.h"
#include "server/model/model_files.h"

namespace engram::tool {

// Standard deviation of Engram table entries (see weights_gen.cc for the scale argument).
inline constexpr float kTableStddev = 0.5f;

// Writes <dir>/model.safetensors: every tensor of ExpectedBackboneTensors(c), in that order,
// in c.dtype (the optional ones only with `optional_tensors`). Tensor `name` is drawn from its
// own stream StreamSeed(seed, HashName(name)).
absl::Status WriteBackbone(const std::string& dir, const ModelConfig& c, uint64_t seed,
                           bool optional_tensors = true);

// How one tensor is initialised; exposed for tests and `info`.
struct InitRule {
  enum Kind { kNormal, kAroundOne } kind = kNormal;
  float scale = 1;  // stddev (kNormal) or 1 +- scale noise times `gain` (kAroundOne)
  float gain = 1;
};
InitRule InitRuleFor(const ModelConfig& c, const ExpectedTensor& t);

}  // namespace engram::tool
