// StreamDecoder tests: streamed text must never contain part of a UTF-8 character, must
// appear as soon as a character is whole, and must add up to the one-shot decode.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "server/tokenizer/tokenizer.h"
#include "server/tokenizer/unicode.h"
#include "tests/data/tokenizer/byte_level_fixture.h"

namespace engram {
namespace {

using ::testing::ElementsAre;
using Ids = std::vector<int32_t>;

constexpr std::string_view kFffd = "\xEF\xBF\xBD";

Tokenizer Standard() {
  absl::StatusOr<Tokenizer> t =
      Tokenizer::FromJson(testing::BuildFixture(testing::StandardSpec()).dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

std::vector<std::string> PushAll(StreamDecoder& d, const Ids& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(d.Push(id));
  return out;
}

TEST(StreamDecoderTest, EmojiBytesAppearOnlyWhenComplete) {
  const Tokenizer t = Standard();
  StreamDecoder d(t);
  // U+1F600 as four single-byte tokens: nothing until the last byte.
  EXPECT_THAT(PushAll(d, {0xF0, 0x9F, 0x98, 0x80}), ElementsAre("", "", "", "\xF0\x9F\x98\x80"));
  EXPECT_EQ(d.Flush(), "");
}

TEST(StreamDecoderTest, TextIsEmittedAsSoonAsItIsWhole) {
  const Tokenizer t = Standard();
  StreamDecoder d(t);
  // "hello" then " world" then "中" split over tokens (E4 B8 AD).
  EXPECT_THAT(PushAll(d, {259, 264, 0xE4, 0xB8, 0xAD, '!'}),
              ElementsAre("hello", " world", "", "", "中", "!"));
}

TEST(StreamDecoderTest, BrokenBytesBecomeReplacementCharacters) {
  const Tokenizer t = Standard();
  StreamDecoder d(t);
  EXPECT_EQ(d.Push(0x80), kFffd);  // a stray continuation byte can never be completed
  EXPECT_EQ(d.Push(0xE4), "");     // might still become a character...
  EXPECT_EQ(d.Push('a'), std::string(kFffd) + "a");  // ...but 'a' breaks it
  EXPECT_EQ(d.Push(0xF0), "");
  EXPECT_EQ(d.Push(0x9F), "");
  EXPECT_EQ(d.Flush(), kFffd);  // the sequence ended mid-character
  EXPECT_EQ(d.Push('x'), "x");  // usable after Flush
}

TEST(StreamDecoderTest, SkipsSpecialTokensWhenAsked) {
  const Tokenizer t = Standard();
  StreamDecoder skip(t, /*skip_special_tokens=*/true);
  EXPECT_THAT(PushAll(skip, {273, 259, 275, 274}), ElementsAre("", "hello", "<tool>", ""));
  StreamDecoder keep(t);
  EXPECT_THAT(PushAll(keep, {273, 259, 274}), ElementsAre("<|bos|>", "hello", "<|eos|>"));
}

TEST(StreamDecoderTest, ConcatenationEqualsDecodeOnMultilingualText) {
  const Tokenizer t = Standard();
  const std::vector<std::string> texts = {
      "中文字符测试，这是一个句子。",
      "日本語のテキスト、ひらがなとカタカナ",
      "العربية نص",
      "👨‍👩‍👧‍👦 🇯🇵 👍🏽 😀",
      "cafe\xCC\x81 É é ð",
      "hello <tool> world\r\n\r\n  x",
  };
  for (const std::string& s : texts) {
    const Ids ids = t.Encode(s);
    StreamDecoder d(t);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = d.Push(id);
      EXPECT_TRUE(IsValidUtf8(piece)) << s;
      streamed += piece;
    }
    streamed += d.Flush();
    EXPECT_EQ(streamed, t.Decode(ids)) << s;
    EXPECT_EQ(streamed, s);
  }
}

TEST(StreamDecoderTest, RandomIdsMatchLossyDecode) {
  const Tokenizer t = Standard();
  std::mt19937 rng(42);
  // Mostly high bytes (0x80-0xFF) so partial and broken sequences are frequent.
  std::uniform_int_distribution<int32_t> high(0x80, 0xFF);
  std::uniform_int_distribution<int32_t> any(0, t.vocab_size() - 1);
  for (int round = 0; round < 500; ++round) {
    Ids ids;
    const int n = 1 + round % 23;
    for (int i = 0; i < n; ++i) ids.push_back(rng() % 3 == 0 ? any(rng) : high(rng));
    StreamDecoder d(t);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = d.Push(id);
      ASSERT_TRUE(IsValidUtf8(piece));
      streamed += piece;
    }
    streamed += d.Flush();
    ASSERT_EQ(streamed, t.DecodeLossy(ids)) << "round " << round;
  }
}

}  // namespace
}  // namespace engram
