// The API's request checks that run before the engine: UTF-8 validity (also on the raw wire, where
// protobuf itself would refuse to parse) and which input is set.
#include "server/api/request_convert.h"

#include "gtest/gtest.h"
#include "server/api/wire_utf8.h"

namespace engram::api {
namespace {

TEST(FirstInvalidUtf8, AcceptsValidAndFindsEachKindOfInvalid) {
  EXPECT_EQ(FirstInvalidUtf8(""), -1);
  EXPECT_EQ(FirstInvalidUtf8("plain ascii"), -1);
  EXPECT_EQ(FirstInvalidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), -1);  // é € 😀
  EXPECT_EQ(FirstInvalidUtf8("ab\xFF"), 2);                                      // never valid
  EXPECT_EQ(FirstInvalidUtf8("a\xC3"), 1);                                       // truncated
  EXPECT_EQ(FirstInvalidUtf8("a\xC3(b"), 1);                                     // bad continuation
  EXPECT_EQ(FirstInvalidUtf8("\xC0\xAF"), 0);                                    // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("x\xED\xA0\x80"), 1);                               // surrogate
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x90\x80\x80"), 0);                            // > U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("\x80"), 0);  // lone continuation
}

std::string Serialized(const v1::GenerateRequest& r) {
  std::string s;
  EXPECT_TRUE(r.SerializeToString(&s));
  return s;
}

// Replaces the first occurrence of `marker` in the wire bytes by bytes of the same length, the
// way a non-protobuf client could send them.
std::string Corrupt(std::string wire, const std::string& marker, const std::string& bytes) {
  const size_t at = wire.find(marker);
  EXPECT_NE(at, std::string::npos);
  EXPECT_EQ(marker.size(), bytes.size());
  wire.replace(at, marker.size(), bytes);
  return wire;
}

TEST(WireUtf8, NamesTheFieldHoldingInvalidUtf8) {
  v1::GenerateRequest r;
  r.set_prompt("hello MARK");
  EXPECT_TRUE(CheckGenerateRequestText(Serialized(r)).ok());
  absl::Status s = CheckGenerateRequestText(Corrupt(Serialized(r), "MARK",
                                                    "M\xFF"
                                                    "RK"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()), "prompt is not valid UTF-8 (bad byte at offset 7)");

  v1::GenerateRequest chat;
  auto* m = chat.mutable_messages();
  m->add_messages()->set_content("fine");
  auto* second = m->add_messages();
  second->set_role("user");
  second->set_content("xxMARK");
  s = CheckGenerateRequestText(Corrupt(Serialized(chat), "MARK",
                                       "\xC0\xAF"
                                       "RK"));
  EXPECT_EQ(std::string(s.message()),
            "messages.messages[1].content is not valid UTF-8 (bad byte at offset 2)");

  v1::GenerateRequest stop;
  stop.set_prompt("p");
  stop.mutable_stopping()->add_stop("ok");
  stop.mutable_stopping()->add_stop("MARK");
  s = CheckGenerateRequestText(Corrupt(Serialized(stop), "MARK", "\xED\xA0\x80K"));
  EXPECT_EQ(std::string(s.message()), "stopping.stop[1] is not valid UTF-8 (bad byte at offset 0)");

  v1::TokenizeRequest t;
  t.set_text("MARK");
  std::string tw;
  ASSERT_TRUE(t.SerializeToString(&tw));
  s = CheckTokenizeRequestText(Corrupt(tw, "MARK",
                                       "\x80"
                                       "ARK"));
  EXPECT_EQ(std::string(s.message()), "text is not valid UTF-8 (bad byte at offset 0)");
}

TEST(WireUtf8, NonProtobufBytesAreLeftToTheParser) {
  EXPECT_TRUE(CheckGenerateRequestText(std::string("\x12\x50", 2)).ok());
  v1::GenerateRequest r;
  EXPECT_FALSE(r.ParseFromString(std::string("\x12\x50", 2)));
}

TEST(ToGenerateParams, UnsetOptionalsKeepTheDefaults) {
  v1::GenerateRequest r;
  auto p = ToGenerateParams(r);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->sampling.temperature, 1.0f);
  EXPECT_EQ(p->sampling.top_p, 1.0f);
  EXPECT_EQ(p->sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(p->sampling.seed.has_value());
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_seed(0);
  p = ToGenerateParams(r);
  EXPECT_EQ(p->sampling.temperature, 0.0f);  // explicit 0 is greedy, not "unset"
  EXPECT_EQ(p->sampling.seed, 0u);
}

}  // namespace
}  // namespace engram::api
