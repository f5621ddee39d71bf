#include "server/engine/validate.h"

#include <cmath>

#include "server/util/str_cat.h"

namespace engram {
namespace {

absl::Status Bad(const std::string& msg) { return absl::InvalidArgumentError(msg); }

bool InRange(float v, float lo, float hi) { return std::isfinite(v) && v >= lo && v <= hi; }

}  // namespace

absl::Status ValidateGenerateParams(const GenerateParams& p, const RequestLimits& limits) {
  const SamplingParams& s = p.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0)
    return Bad(StrCat("sampling.temperature must be a finite number >= 0 (0 = greedy), got ",
                      s.temperature));
  if (!(std::isfinite(s.top_p) && s.top_p > 0 && s.top_p <= 1))
    return Bad(StrCat("sampling.top_p must be in (0, 1], got ", s.top_p));
  if (s.top_k < 0 || s.top_k > limits.vocab_size)
    return Bad(StrCat("sampling.top_k must be in [0, ", limits.vocab_size,
                      "] (0 = off, at most the vocabulary size), got ", s.top_k));
  if (!InRange(s.min_p, 0, 1))
    return Bad(StrCat("sampling.min_p must be in [0, 1], got ", s.min_p));
  if (!(std::isfinite(s.repetition_penalty) && s.repetition_penalty > 0 &&
        s.repetition_penalty <= 10))
    return Bad(StrCat("sampling.repetition_penalty must be in (0, 10] (1 = off), got ",
                      s.repetition_penalty));
  if (!InRange(s.presence_penalty, -2, 2))
    return Bad(StrCat("sampling.presence_penalty must be in [-2, 2], got ", s.presence_penalty));
  if (!InRange(s.frequency_penalty, -2, 2))
    return Bad(StrCat("sampling.frequency_penalty must be in [-2, 2], got ", s.frequency_penalty));
  const StoppingParams& st = p.stopping;
  if (st.max_new_tokens < 0 || st.max_new_tokens > limits.max_model_len)
    return Bad(StrCat("stopping.max_new_tokens must be in [0, ", limits.max_model_len,
                      "] (0 = up to the context length), got ", st.max_new_tokens));
  if (st.stop.size() > static_cast<size_t>(kMaxStopStrings))
    return Bad(StrCat("stopping.stop has ", st.stop.size(), " strings; at most ", kMaxStopStrings,
                      " are allowed"));
  for (size_t i = 0; i < st.stop.size(); ++i) {
    if (st.stop[i].empty()) return Bad(StrCat("stopping.stop[", i, "] is empty"));
    if (st.stop[i].size() > kMaxStopStringBytes)
      return Bad(StrCat("stopping.stop[", i, "] is ", st.stop[i].size(), " bytes; at most ",
                        kMaxStopStringBytes, " are allowed"));
  }
  if (p.logprobs < 0 || p.logprobs > kMaxLogprobs)
    return Bad(StrCat("logprobs must be in [0, ", kMaxLogprobs, "], got ", p.logprobs));
  return absl::OkStatus();
}

absl::Status ValidatePrompt(std::span<const int32_t> prompt, const GenerateParams& p,
                            const RequestLimits& limits) {
  if (prompt.empty()) return Bad("the prompt is empty: give prompt, prompt_token_ids or messages");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= limits.vocab_size)
      return Bad(StrCat("prompt_token_ids[", i, "] = ", prompt[i],
                        " is outside the vocabulary [0, ", limits.vocab_size, ")"));
  const int64_t n = static_cast<int64_t>(prompt.size());
  const int64_t want = n + std::max<int64_t>(1, p.stopping.max_new_tokens);
  if (want > limits.max_model_len)
    return Bad(StrCat("the prompt (", n, " tokens) plus stopping.max_new_tokens (",
                      p.stopping.max_new_tokens, ") exceeds the context length of ",
                      limits.max_model_len, " tokens"));
  return absl::OkStatus();
}

}  // namespace engram
