// What `engram-client bench` sends and when: the prompts (random token ids, the nano-vLLM
// workload of DESIGN §6, or a JSONL file), each request's max-tokens, and the open-loop arrival
// times (vLLM benchmark_serving's Poisson / gamma process).
//
// Everything is a pure function of the seed, and each aspect draws from its own stream derived
// from it, so changing one knob (the request rate, the output lengths) leaves the others exactly
// as they were: two runs at different rates send the same prompts. The generator and the gamma
// sampler are written out here rather than taken from <random>, whose distributions differ
// between standard libraries, so a seed names the same workload everywhere.
#pragma once

#include "engram/kernels/sampling_math.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/flags.h"

namespace engram::client {

// Stream ids for DeriveSeed.
inline constexpr uint64_t kStreamMeasured = 1;  // the requests the metrics describe
inline constexpr uint64_t kStreamWarmup = 2;    // warm-up requests, never in the metrics
inline constexpr uint64_t kStreamArrivals = 3;

// An independent seed for one stream of a run's randomness.
uint64_t DeriveSeed(uint64_t seed, uint64_t stream);

// xoshiro256** seeded through splitmix64: small, fast, and the same on every platform.
class BenchRng {
 public:
  explicit BenchRng(uint64_t seed);
  uint64_t Next();
  uint64_t Below(uint64_t bound);            // uniform in [0, bound), bound > 0
  int64_t Between(int64_t lo, int64_t hi);   // uniform in [lo, hi], inclusive
  double Uniform();                          // uniform in [0, 1)
  double Normal();                           // standard normal (Box-Muller)
  double Gamma(double shape, double scale);  // Marsaglia-Tsang; shape > 0, scale > 0

 private:
  Xoshiro256 st_;
};

struct BenchPrompt {
  enum class Kind { kTokenIds, kText, kMessages };
  Kind kind = Kind::kTokenIds;
  std::vector<uint32_t> token_ids;                            // kTokenIds
  std::string text;                                           // kText
  std::vector<std::pair<std::string, std::string>> messages;  // kMessages: (role, content)
  uint32_t max_tokens = 0;
  // Known for token ids; 0 for text and messages, whose length only the server's tokenizer knows
  // (the final message's usage reports it).
  uint32_t prompt_len = 0;
};

// `n` prompts of Uniform(input_len) token ids, each id Uniform[0, vocab_size), and max-tokens
// Uniform(output_len).
std::vector<BenchPrompt> RandomPrompts(size_t n, IntRange input_len, IntRange output_len,
                                       uint32_t vocab_size, uint64_t seed);

// A JSONL prompt file, one request per line: {"prompt": "..."} or {"messages": [{"role": ...,
// "content": ...}, ...]}, with an optional "max_tokens" that overrides --max-tokens for that
// line (max_tokens 0 when the line does not set it). Blank lines are skipped; an error names the
// file and line.
absl::StatusOr<std::vector<BenchPrompt>> LoadJsonlDataset(const std::string& path);
absl::StatusOr<std::vector<BenchPrompt>> ParseJsonlDataset(const std::string& contents,
                                                           const std::string& name);

// `n` prompts drawn from `entries` in a seeded random order (cycling through it again when n
// exceeds its size); lines without max_tokens get Uniform(output_len).
std::vector<BenchPrompt> DatasetPrompts(const std::vector<BenchPrompt>& entries, size_t n,
                                        IntRange output_len, uint64_t seed);

// Send times in seconds from the start, for an open loop at `rate` requests/s: the first at 0,
// then gaps drawn from Gamma(shape = burstiness, scale = 1 / (rate * burstiness)), whose mean is
// 1 / rate whatever the burstiness (1 = Poisson; lower is burstier, higher more regular), as in
// vLLM's benchmark_serving. rate = inf sends everything at 0.
std::vector<double> ArrivalTimes(size_t n, double rate, double burstiness, uint64_t seed);

}  // namespace engram::client
