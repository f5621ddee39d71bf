// The sampling and stopping flags generate, chat and bench share, and how they fill a
// GenerateRequest. Only flags the user set are sent: an unset optional field lets the server
// apply its documented default (inference.proto), so the client never restates them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/flags.h"
#include "engram/v1/inference.pb.h"

namespace engram::client {

struct SamplingOptions {
  double temperature = 1;
  double top_p = 1;
  int64_t top_k = 0;
  double min_p = 0;
  double repetition_penalty = 1;
  double presence_penalty = 0;
  double frequency_penalty = 0;
  int64_t seed = 0;
};

struct StoppingOptions {
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool include_stop_str = false;
};

// `with_seed`: bench uses --seed for its workload, not for sampling.
void AddSamplingFlags(FlagParser& parser, SamplingOptions* options, bool with_seed);
void AddStoppingFlags(FlagParser& parser, StoppingOptions* options);

void ApplySampling(const FlagParser& parser, const SamplingOptions& options,
                   engram::v1::SamplingParams* out);
void ApplyStopping(const StoppingOptions& options, engram::v1::StoppingCriteria* out);

}  // namespace engram::client
