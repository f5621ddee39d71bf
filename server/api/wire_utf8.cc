#include "server/api/wire_utf8.h"

#include <google/protobuf/unknown_field_set.h>

#include "server/api/request_convert.h"
#include "server/util/str_cat.h"

namespace engram::api {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Field numbers from proto/engram/v1/inference.proto.
struct TextField {
  int number;
  const char* name;
};

// Singular text fields of one message level.
absl::Status CheckStrings(const UnknownFieldSet& set, const std::string& prefix,
                          std::initializer_list<TextField> fields) {
  for (int i = 0; i < set.field_count(); ++i) {
    const UnknownField& f = set.field(i);
    if (f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    for (const TextField& t : fields)
      if (f.number() == t.number)
        if (int64_t at = FirstInvalidUtf8(f.length_delimited()); at >= 0)
          return absl::InvalidArgumentError(
              StrCat(prefix, t.name, " is not valid UTF-8 (bad byte at offset ", at, ")"));
  }
  return absl::OkStatus();
}

// ChatMessages{repeated ChatMessage messages = 1}; ChatMessage{role = 1, content = 2}.
absl::Status CheckChat(const std::string& wire, const std::string& prefix) {
  UnknownFieldSet chat;
  if (!chat.ParseFromString(wire)) return absl::OkStatus();
  int n = 0;
  for (int i = 0; i < chat.field_count(); ++i) {
    const UnknownField& f = chat.field(i);
    if (f.number() != 1 || f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    UnknownFieldSet msg;
    if (!msg.ParseFromString(f.length_delimited())) continue;
    if (auto s =
            CheckStrings(msg, StrCat(prefix, "messages[", n, "]."), {{1, "role"}, {2, "content"}});
        !s.ok())
      return s;
    ++n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckGenerateRequestText(const std::string& wire) {
  UnknownFieldSet req;
  if (!req.ParseFromString(wire)) return absl::OkStatus();
  if (auto s = CheckStrings(req, "", {{1, "request_id"}, {2, "prompt"}}); !s.ok()) return s;
  int stops = 0;
  for (int i = 0; i < req.field_count(); ++i) {
    const UnknownField& f = req.field(i);
    if (f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    if (f.number() == 4) {
      if (auto s = CheckChat(f.length_delimited(), "messages."); !s.ok()) return s;
    } else if (f.number() == 6) {  // StoppingCriteria{repeated string stop = 2}
      UnknownFieldSet st;
      if (!st.ParseFromString(f.length_delimited())) continue;
      for (int k = 0; k < st.field_count(); ++k) {
        const UnknownField& x = st.field(k);
        if (x.number() != 2 || x.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
        if (int64_t at = FirstInvalidUtf8(x.length_delimited()); at >= 0)
          return absl::InvalidArgumentError(StrCat(
              "stopping.stop[", stops, "] is not valid UTF-8 (bad byte at offset ", at, ")"));
        ++stops;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTokenizeRequestText(const std::string& wire) {
  UnknownFieldSet req;
  if (!req.ParseFromString(wire)) return absl::OkStatus();
  if (auto s = CheckStrings(req, "", {{1, "text"}}); !s.ok()) return s;
  for (int i = 0; i < req.field_count(); ++i) {
    const UnknownField& f = req.field(i);
    if (f.number() == 2 && f.type() == UnknownField::TYPE_LENGTH_DELIMITED)
      if (auto s = CheckChat(f.length_delimited(), "messages."); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace engram::api
