// engram.v1 messages to and from the engine's types. Conversion validates what only the API can
// see (which input is set, UTF-8, sizes); the engine validates the rest (server/engine/validate.h).
// Every error is INVALID_ARGUMENT and names the field as the proto spells it.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "engram/v1/inference.pb.h"
#include "server/engine/request.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/tokenizer.h"

namespace engram::api {

struct InputLimits {
  size_t max_input_bytes = 1 << 20;  // prompt text, or all message contents together
  int max_messages = 1024;
};

// Tokenizes whichever input is set: the prompt, the ids as given, or the messages rendered with
// the chat template.
absl::StatusOr<std::vector<int32_t>> InputTokens(const v1::GenerateRequest& r,
                                                 const Tokenizer& tokenizer,
                                                 const ChatTemplate& chat,
                                                 const InputLimits& limits);
absl::StatusOr<std::vector<int32_t>> ChatTokens(const v1::ChatMessages& m,
                                                const Tokenizer& tokenizer,
                                                const ChatTemplate& chat,
                                                const InputLimits& limits);
absl::StatusOr<GenerateParams> ToGenerateParams(const v1::GenerateRequest& r);

v1::FinishReason ToProto(FinishReason r);
// Fills `resp` (cleared first) from one engine output; `tokenizer` spells logprob alternatives.
void ToProto(const RequestOutput& o, const std::string& request_id, const Tokenizer& tokenizer,
             v1::GenerateResponse* resp);

// Byte offset of the first invalid UTF-8 sequence, or -1.
int64_t FirstInvalidUtf8(std::string_view s);

}  // namespace engram::api
