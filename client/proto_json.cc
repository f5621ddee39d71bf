#include "client/proto_json.h"

#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace engram::client {

std::string ToJsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  // Serialising a well-formed message only fails on invalid UTF-8 in a string field, which the
  // server never sends (it streams whole characters); say so rather than print half a line.
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok())
    return R"({"error":"response not representable as JSON"})";
  return out;
}

std::string Quoted(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace engram::client
