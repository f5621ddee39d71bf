// Request validation shared by the gRPC API and offline callers. Every error is
// INVALID_ARGUMENT and names the field (in the API's spelling) and the allowed range, so a client
// can fix the request from the message alone.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "server/engine/request.h"

namespace engram {

inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;
inline constexpr int kMaxLogprobs = 20;

struct RequestLimits {
  int vocab_size = 0;
  int64_t max_model_len = 0;  // prompt + max_new_tokens must fit
};

absl::Status ValidateGenerateParams(const GenerateParams& p, const RequestLimits& limits);
// Non-empty, ids inside the vocabulary, and room for at least one new token (and for
// max_new_tokens when set).
absl::Status ValidatePrompt(std::span<const int32_t> prompt, const GenerateParams& p,
                            const RequestLimits& limits);

}  // namespace engram
