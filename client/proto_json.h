// One protobuf message as one line of JSON, for --json output. The choices, made once for every
// command so scripts see one format:
//  - field names as written in inference.proto (snake_case: "finish_reason", "token_ids"), not
//    proto3 JSON's lowerCamelCase, so the .proto is the documentation of the output;
//  - fields at their default value printed too ("text": "" on the last message, "finish_reason":
//    "FINISH_REASON_UNSPECIFIED" before it), so `jq .text` never yields null;
//  - enums by name; 64-bit integers as strings, as proto3 JSON specifies.
#pragma once

#include <string>
#include <string_view>

#include "google/protobuf/message.h"

namespace engram::client {

std::string ToJsonLine(const google::protobuf::Message& message);

// A string as a JSON string literal ("a\nb"), invalid UTF-8 replaced by U+FFFD: how the
// human-readable outputs show token pieces, whose spaces and control bytes would vanish.
std::string Quoted(std::string_view s);

}  // namespace engram::client
