// proto3 `string` fields must hold UTF-8, and protobuf refuses to parse a message where one does
// not; gRPC then answers with a bare UNIMPLEMENTED before any handler runs. Generate and Tokenize
// therefore take their requests as raw bytes and check the text fields on the wire first, so the
// client gets INVALID_ARGUMENT naming the field.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace engram::api {

// OK when every text field of the serialized engram.v1.GenerateRequest (or TokenizeRequest) is
// valid UTF-8, or the bytes are not even a protobuf (parsing reports that); else
// INVALID_ARGUMENT naming the field, e.g. "messages.messages[1].content is not valid UTF-8".
absl::Status CheckGenerateRequestText(const std::string& wire);
absl::Status CheckTokenizeRequestText(const std::string& wire);

}  // namespace engram::api
