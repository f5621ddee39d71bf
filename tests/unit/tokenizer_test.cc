// Tokenizer tests: exact ids on a hand-built byte-level BPE fixture (expected ids reasoned
// from the merge ranks), pre-tokenizer splitting, added tokens, templates, round trips on
// multilingual text, and load errors that must name the offending field.
#include "server/tokenizer/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "server/tokenizer/byte_level.h"
#include "server/tokenizer/pre_tokenizer.h"
#include "server/tokenizer/regex.h"
#include "server/tokenizer/unicode.h"
#include "tests/data/tokenizer/byte_level_fixture.h"

namespace engram {
namespace {

using testing::BuildFixture;
using ::testing::ElementsAre;
using testing::FixtureSpec;
using ::testing::HasSubstr;
using testing::StandardSpec;
using testing::ToByteLevel;
using Ids = std::vector<int32_t>;

Tokenizer MustLoad(const nlohmann::json& json) {
  absl::StatusOr<Tokenizer> t = Tokenizer::FromJson(json.dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

std::string ErrorOf(const nlohmann::json& json) {
  absl::StatusOr<Tokenizer> t = Tokenizer::FromJson(json.dump());
  EXPECT_FALSE(t.ok());
  return t.ok() ? "" : std::string(t.status().message());
}

std::vector<std::string> SplitBy(std::string_view pattern, std::string_view text,
                                 SplitBehavior behavior = SplitBehavior::kIsolated,
                                 bool invert = false) {
  absl::StatusOr<std::shared_ptr<const Regex>> re = Regex::Compile(pattern);
  EXPECT_TRUE(re.ok()) << re.status();
  std::vector<std::string> out;
  SplitWithPattern(text, **re, behavior, invert, &out);
  return out;
}

constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------- UTF-8 and byte map

TEST(Utf8Test, LossyMatchesPythonReplace) {
  EXPECT_EQ(Utf8Lossy("plain ascii"), "plain ascii");
  EXPECT_EQ(Utf8Lossy("\xE4"), "\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("a\xE4\xB8"), "a\xEF\xBF\xBD");            // truncated: one U+FFFD
  EXPECT_EQ(Utf8Lossy("\xE4\xB8x"), "\xEF\xBF\xBDx");            // broken: one, then x
  EXPECT_EQ(Utf8Lossy("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: two
  // A surrogate (ED A0 80) is three maximal subparts, as in Python.
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Utf8Lossy("\xF4\x90\x80\x80"),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // above U+10FFFF
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(Utf8Test, CompletePrefixHoldsBackOnlyRepairableTails) {
  EXPECT_EQ(Utf8CompletePrefixLen("ab"), 2u);
  EXPECT_EQ(Utf8CompletePrefixLen("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(Utf8CompletePrefixLen("ab\xE4"), 2u);
  EXPECT_EQ(Utf8CompletePrefixLen("ab\x80"), 3u);     // can never become valid
  EXPECT_EQ(Utf8CompletePrefixLen("\xE4x\xE4"), 2u);  // first E4 is broken, second pending
  EXPECT_EQ(Utf8CompletePrefixLen("\xF0\x9F\x98\x80"), 4u);
}

TEST(ByteLevelTest, MatchesGpt2Map) {
  EXPECT_EQ(ByteLevelChar(' '), "Ġ");
  EXPECT_EQ(ByteLevelChar('\n'), "Ċ");
  EXPECT_EQ(ByteLevelChar('a'), "a");
  EXPECT_EQ(ByteLevelChar(0xE4), "ä");
  EXPECT_EQ(ByteLevelChar(0x00), "Ā");
  EXPECT_EQ(ByteLevelChar(0xAD), "Ń");
  for (unsigned b = 0; b < 256; ++b) {
    EXPECT_EQ(ByteLevelChar(static_cast<uint8_t>(b)), testing::FixtureByteChar(b)) << b;
    std::string decoded;
    ASSERT_TRUE(AppendByteLevelDecoded(ByteLevelChar(static_cast<uint8_t>(b)), &decoded));
    EXPECT_EQ(decoded, std::string(1, static_cast<char>(b)));
  }
  std::string out;
  EXPECT_FALSE(AppendByteLevelDecoded("<｜tool▁sep｜>", &out));
  EXPECT_TRUE(out.empty());
}

// ---------------------------------------------------------------- regex and splitting

TEST(RegexTest, WhitespaceClassIsExactlyWhiteSpaceLikeOniguruma) {
  // U+0085 NEXT LINE is White_Space; U+180E MONGOLIAN VOWEL SEPARATOR no longer is, though
  // PCRE2's own \s still matches it.
  EXPECT_THAT(SplitBy("\\s+",
                      "a\xC2\x85"
                      "b"),
              ElementsAre("a", "\xC2\x85", "b"));
  EXPECT_THAT(SplitBy("[^\\s]+",
                      "a\xC2\x85"
                      "b"),
              ElementsAre("a", "\xC2\x85", "b"));
  EXPECT_THAT(SplitBy("\\s+",
                      "a\xE1\xA0\x8E"
                      "b"),
              ElementsAre("a\xE1\xA0\x8E"
                          "b"));
  EXPECT_THAT(SplitBy("\\S+",
                      "a\xE1\xA0\x8E"
                      "b c"),
              ElementsAre("a\xE1\xA0\x8E"
                          "b",
                          " ", "c"));
  EXPECT_THAT(SplitBy("\\s+",
                      "a\t\n\x0B\x0C\r \xE3\x80\x80"
                      "b"),
              ElementsAre("a", "\t\n\x0B\x0C\r \xE3\x80\x80", "b"));
}

TEST(RegexTest, EmptyMatchesIterateLikeOnigCrate) {
  absl::StatusOr<std::shared_ptr<const Regex>> re = Regex::Compile("a*");
  ASSERT_TRUE(re.ok());
  std::vector<std::pair<size_t, size_t>> m;
  (*re)->FindAll("baa", &m);
  EXPECT_THAT(m, ElementsAre(std::pair<size_t, size_t>(0, 0), std::pair<size_t, size_t>(1, 3)));
}

TEST(RegexTest, BadPatternIsAnError) {
  absl::StatusOr<std::shared_ptr<const Regex>> re = Regex::Compile("(unclosed");
  ASSERT_FALSE(re.ok());
  EXPECT_THAT(std::string(re.status().message()), HasSubstr("(unclosed"));
}

TEST(Gpt2RegexTest, SplitsContractionsNumbersAndSpaces) {
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "I'm don't you'll"),
              ElementsAre("I", "'m", " don", "'t", " you", "'ll"));
  // GPT-2's contractions are case-sensitive.
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "HE'S"), ElementsAre("HE", "'", "S"));
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "abc 12345 x"), ElementsAre("abc", " 12345", " x"));
  // The last space of a run goes with the next word.
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "a  "), ElementsAre("a", "  "));
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "hello\n\nworld"),
              ElementsAre("hello", "\n", "\n", "world"));
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "x, y!?"), ElementsAre("x", ",", " y", "!?"));
  EXPECT_THAT(SplitBy(kGpt2SplitPattern, "naïve 東京"), ElementsAre("naïve", " 東京"));
}

TEST(Llama3RegexTest, CaseInsensitiveContractionsAndThreeDigitNumbers) {
  EXPECT_THAT(SplitBy(kLlama3Pattern, "HE'S"), ElementsAre("HE", "'S"));
  EXPECT_THAT(SplitBy(kLlama3Pattern, "12345"), ElementsAre("123", "45"));
  EXPECT_THAT(SplitBy(kLlama3Pattern, "a\r\n\r\nb"), ElementsAre("a", "\r\n\r\n", "b"));
  EXPECT_THAT(SplitBy(kLlama3Pattern, "(hi)"), ElementsAre("(hi", ")"));
}

TEST(SplitBehaviorTest, AllBehaviorsMatchHfDocs) {
  const std::string dash = Regex::Escape("-");
  EXPECT_THAT(SplitBy(dash, "a-b--c", SplitBehavior::kRemoved), ElementsAre("a", "b", "c"));
  EXPECT_THAT(SplitBy(dash, "a-b--c", SplitBehavior::kIsolated),
              ElementsAre("a", "-", "b", "-", "-", "c"));
  EXPECT_THAT(SplitBy(dash, "a-b--c", SplitBehavior::kMergedWithPrevious),
              ElementsAre("a-", "b-", "-", "c"));
  EXPECT_THAT(SplitBy(dash, "a-b--c", SplitBehavior::kMergedWithNext),
              ElementsAre("a", "-b", "-", "-c"));
  EXPECT_THAT(SplitBy(dash, "a-b--c", SplitBehavior::kContiguous),
              ElementsAre("a", "-", "b", "--", "c"));
  EXPECT_THAT(SplitBy(dash, "a-b--c", SplitBehavior::kRemoved, /*invert=*/true),
              ElementsAre("-", "-", "-"));
  EXPECT_THAT(SplitBy("\\d+", "ab12cd345", SplitBehavior::kRemoved, /*invert=*/true),
              ElementsAre("12", "345"));
  EXPECT_THAT(SplitBy(dash, "", SplitBehavior::kIsolated), ElementsAre());
}

TEST(PreTokenizerTest, SequenceOfSplitsThenByteLevel) {
  nlohmann::json json = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", "\\p{N}{1,3}"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "Split"},
         {"pattern", {{"String", " "}}},
         {"behavior", "MergedWithNext"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  absl::StatusOr<PreTokenizer> pre = PreTokenizer::FromJson(json, "pre_tokenizer");
  ASSERT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string> out;
  pre->Split("go 12345 now", &out);
  EXPECT_THAT(out, ElementsAre("go", "Ġ", "123", "45", "Ġnow"));
}

TEST(PreTokenizerTest, ByteLevelPrefixSpace) {
  nlohmann::json json = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  absl::StatusOr<PreTokenizer> pre = PreTokenizer::FromJson(json, "pre_tokenizer");
  ASSERT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string> out;
  pre->Split("hi there", &out);
  EXPECT_THAT(out, ElementsAre("Ġhi", "Ġthere"));
}

// ---------------------------------------------------------------- encode: exact ids

TEST(EncodeTest, ExactIdsFromMergeRanks) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  EXPECT_EQ(t.vocab_size(), 276);
  // "hello": h+e (rank 0), l+l (1), he+ll (2), hell+o (3); "e l" (rank 10) never fires.
  EXPECT_EQ(t.Encode("hello world"), (Ids{259, 264}));
  // "ell": l+l has a lower rank than e+l, so "e" stays alone.
  EXPECT_EQ(t.Encode("ell"), (Ids{'e', 257}));
  // Equal ranks: the leftmost pair merges first.
  EXPECT_EQ(t.Encode("lll"), (Ids{257, 'l'}));
  EXPECT_EQ(t.Encode("hello  world"), (Ids{259, ' ', 264}));
  EXPECT_EQ(t.Encode("hello\n\n"), (Ids{259, 267}));
  EXPECT_EQ(t.Encode("\r\n"), (Ids{268}));
  EXPECT_EQ(t.Encode("é"), (Ids{271}));
  EXPECT_EQ(t.Encode("e\xCC\x81"), (Ids{'e', 0xCC, 0x81}));  // no normalizer: stays NFD
  EXPECT_EQ(t.Encode("\xF0\x9F\x98\x80"), (Ids{0xF0, 0x9F, 0x98, 0x80}));
  EXPECT_EQ(t.Encode(""), Ids{});
}

TEST(EncodeTest, PairFormMergesGiveTheSameIds) {
  FixtureSpec spec = StandardSpec();
  spec.pair_merges = true;
  const Tokenizer t = MustLoad(BuildFixture(spec));
  EXPECT_EQ(t.Encode("hello world"), (Ids{259, 264}));
}

TEST(EncodeTest, NfcNormalizerComposesBeforeBpe) {
  FixtureSpec spec = StandardSpec();
  spec.normalizer = {{"type", "NFC"}};
  const Tokenizer t = MustLoad(BuildFixture(spec));
  EXPECT_EQ(t.Encode("e\xCC\x81"), (Ids{271}));
  spec.normalizer = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  EXPECT_EQ(MustLoad(BuildFixture(spec)).Encode("e\xCC\x81"), (Ids{271}));
}

TEST(EncodeTest, IgnoreMergesEmitsWholeVocabWords) {
  FixtureSpec spec;
  spec.merges = {{"a", "b"}};          // 256 "ab"
  spec.extra_vocab = {"abc", " abc"};  // 257, 258: unreachable by merges
  const Tokenizer plain = MustLoad(BuildFixture(spec));
  EXPECT_EQ(plain.Encode("abc"), (Ids{256, 'c'}));
  spec.ignore_merges = true;
  const Tokenizer llama_style = MustLoad(BuildFixture(spec));
  EXPECT_EQ(llama_style.Encode("abc"), (Ids{257}));
  EXPECT_EQ(llama_style.Encode("x abc"), (Ids{'x', 258}));
  EXPECT_EQ(llama_style.Encode("abcd"), (Ids{256, 'c', 'd'}));  // not a vocab entry: merges
}

TEST(EncodeTest, AddedTokensCutTheTextFirst) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  EXPECT_EQ(t.Encode("<|bos|>hello<tool> world<|eos|>"), (Ids{273, 259, 275, 264, 274}));
  // Not a token: "<|bos|" without the closing ">" is ordinary text.
  EXPECT_EQ(t.Encode("<|bos|").size(), 6u);
  EXPECT_EQ(t.Encode("<tool><tool>"), (Ids{275, 275}));
}

TEST(EncodeTest, AddedTokensLongestMatchAndStripping) {
  FixtureSpec spec = StandardSpec();
  spec.added_tokens.push_back(testing::AddedTokenJson(276, "<t>", false));
  spec.added_tokens.push_back(testing::AddedTokenJson(277, "<t>x", false));
  nlohmann::json mask = testing::AddedTokenJson(278, "<mask>", true);
  mask["lstrip"] = true;
  mask["rstrip"] = true;
  spec.added_tokens.push_back(mask);
  nlohmann::json word = testing::AddedTokenJson(279, "ok", false);
  word["single_word"] = true;
  spec.added_tokens.push_back(word);
  const Tokenizer t = MustLoad(BuildFixture(spec));
  EXPECT_EQ(t.Encode("<t>xy"), (Ids{277, 'y'}));
  EXPECT_EQ(t.Encode("<t>y"), (Ids{276, 'y'}));
  // lstrip/rstrip absorb the surrounding spaces into the token.
  EXPECT_EQ(t.Encode("ab  <mask>  ab"), (Ids{272, 278, 272}));
  // single_word: only matches between non-word characters.
  EXPECT_EQ(t.Encode("ok ab"), (Ids{279, ' ', 272}));
  EXPECT_EQ(t.Encode("book"), (Ids{'b', 'o', 'o', 'k'}));
}

TEST(EncodeTest, TemplateAddsSpecialTokensOnlyWhenAsked) {
  FixtureSpec spec = StandardSpec();
  spec.post_processor = {
      {"type", "TemplateProcessing"},
      {"single",
       {{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        {{"SpecialToken", {{"id", "<|eos|>"}, {"type_id", 0}}}}}},
      {"pair", nlohmann::json::array()},
      {"special_tokens",
       {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {273}}, {"tokens", {"<|bos|>"}}}},
        {"<|eos|>", {{"id", "<|eos|>"}, {"ids", {274}}, {"tokens", {"<|eos|>"}}}}}}};
  const Tokenizer t = MustLoad(BuildFixture(spec));
  EXPECT_EQ(t.Encode("hello", /*add_special_tokens=*/true), (Ids{273, 259, 274}));
  EXPECT_EQ(t.Encode("hello", /*add_special_tokens=*/false), (Ids{259}));

  // Llama 3 style: Sequence [ByteLevel, TemplateProcessing].
  spec.post_processor = {
      {"type", "Sequence"},
      {"processors", {{{"type", "ByteLevel"}, {"trim_offsets", false}}, spec.post_processor}}};
  EXPECT_EQ(MustLoad(BuildFixture(spec)).Encode("hello", true), (Ids{273, 259, 274}));
}

TEST(EncodeTest, InvalidUtf8InputIsReplacedNotDropped) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  EXPECT_EQ(t.Encode("a\xFF"), t.Encode("a\xEF\xBF\xBD"));
}

TEST(EncodeTest, ConcurrentEncodeIsConsistent) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  std::vector<std::string> texts;
  texts.reserve(200);
  for (int i = 0; i < 200; ++i) {
    texts.push_back("hello world " + std::to_string(i) + " ell lll <tool> é " +
                    std::string(static_cast<size_t>(i % 7), ' ') + "x");
  }
  std::vector<Ids> expected;
  expected.reserve(texts.size());
  for (const std::string& s : texts) expected.push_back(t.Encode(s));
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::vector<int> failures(8, 0);
  for (int k = 0; k < 8; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (t.Encode(texts[(i + k) % texts.size()]) != expected[(i + k) % texts.size()]) {
            ++failures[k];
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

// ---------------------------------------------------------------- decode and lookups

TEST(DecodeTest, RoundTripsMultilingualText) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  const std::vector<std::string> texts = {
      "hello world",
      "中文字符测试，这是一个句子。",
      "日本語のテキスト、ひらがなとカタカナです。",
      "العربية نص تجريبي",
      "family 👨‍👩‍👧‍👦 flag 🇯🇵 thumbs 👍🏽",
      "cafe\xCC\x81 naïve Å",
      "  leading and trailing  ",
      "tabs\tand\r\nwindows\r\n\r\nlines\n\n\n",
      "   \t \n ",
      "text with <|bos|> and <tool>inside<|eos|> it",
      "",
  };
  for (const std::string& s : texts) {
    const Ids ids = t.Encode(s);
    EXPECT_EQ(t.Decode(ids), s) << s;
    EXPECT_EQ(t.DecodeLossy(ids), s) << s;
  }
}

TEST(DecodeTest, SkipSpecialAndRawBytes) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  const Ids ids = {273, 259, 275, 264, 274};
  EXPECT_EQ(t.Decode(ids), "<|bos|>hello<tool> world<|eos|>");
  EXPECT_EQ(t.Decode(ids, /*skip_special_tokens=*/true), "hello<tool> world");  // <tool> stays
  EXPECT_EQ(t.Decode(Ids{0xE4}), "\xE4");  // raw: half a character
  EXPECT_EQ(t.DecodeLossy(Ids{0xE4}), "\xEF\xBF\xBD");
  EXPECT_EQ(t.Decode(Ids{-1, 9999, 259}), "hello");  // unknown ids are skipped
}

TEST(DecodeTest, LookupsAndFlags) {
  const Tokenizer t = MustLoad(BuildFixture(StandardSpec()));
  EXPECT_EQ(t.IdToToken(264), "Ġworld");
  EXPECT_EQ(t.IdToToken(0xE4), "ä");
  EXPECT_EQ(t.IdToToken(273), "<|bos|>");
  EXPECT_EQ(t.IdToToken(276), std::nullopt);
  EXPECT_EQ(t.TokenToId("Ġworld"), 264);
  EXPECT_EQ(t.TokenToId("<tool>"), 275);
  EXPECT_EQ(t.TokenToId("nope"), std::nullopt);
  EXPECT_TRUE(t.IsSpecial(273));
  EXPECT_FALSE(t.IsSpecial(275));
  EXPECT_TRUE(t.IsAddedToken(275));
  EXPECT_FALSE(t.IsSpecial(259));
}

// ---------------------------------------------------------------- load errors

TEST(LoadErrorTest, TruncatedJson) {
  const std::string json = BuildFixture(StandardSpec()).dump();
  absl::StatusOr<Tokenizer> t = Tokenizer::FromJson(std::string_view(json).substr(0, 100));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("not valid JSON"));
}

TEST(LoadErrorTest, UnknownModelType) {
  nlohmann::json json = BuildFixture(StandardSpec());
  json["model"]["type"] = "Unigram";
  const std::string msg = ErrorOf(json);
  EXPECT_THAT(msg, HasSubstr("model.type"));
  EXPECT_THAT(msg, HasSubstr("Unigram"));
}

TEST(LoadErrorTest, UnknownPreTokenizerNamesItsPath) {
  nlohmann::json json = BuildFixture(StandardSpec());
  json["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Whitespace"}}}}};
  const std::string msg = ErrorOf(json);
  EXPECT_THAT(msg, HasSubstr("pre_tokenizer.pretokenizers[1].type"));
  EXPECT_THAT(msg, HasSubstr("Whitespace"));
}

TEST(LoadErrorTest, OtherBadFields) {
  nlohmann::json json = BuildFixture(StandardSpec());
  json["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"Regex", "x"}}},
                           {"behavior", "Sideways"},
                           {"invert", false}};
  EXPECT_THAT(ErrorOf(json), HasSubstr("pre_tokenizer.behavior"));

  json = BuildFixture(StandardSpec());
  json["normalizer"] = {{"type", "BertNormalizer"}};
  EXPECT_THAT(ErrorOf(json), HasSubstr("normalizer.type"));

  json = BuildFixture(StandardSpec());
  json["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(ErrorOf(json), HasSubstr("decoder.type"));

  json = BuildFixture(StandardSpec());
  json["model"]["merges"].push_back("zzz qqq");
  EXPECT_THAT(ErrorOf(json), HasSubstr("model.merges[17]"));

  json = BuildFixture(StandardSpec());
  json["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(bad"}}}, {"behavior", "Isolated"}};
  EXPECT_THAT(ErrorOf(json), HasSubstr("pre_tokenizer.pattern"));

  json = BuildFixture(StandardSpec());
  json.erase("model");
  EXPECT_THAT(ErrorOf(json), HasSubstr("model"));
}

TEST(LoadErrorTest, FromFileNamesTheFile) {
  absl::StatusOr<Tokenizer> missing = Tokenizer::FromFile("/nonexistent/dir/tokenizer.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("/nonexistent/dir/tokenizer.json"));

  const std::string path = ::testing::TempDir() + "/engram_tokenizer_test.json";
  nlohmann::json json = BuildFixture(StandardSpec());
  json["model"]["type"] = "WordPiece";
  std::ofstream(path) << json.dump();
  absl::StatusOr<Tokenizer> bad = Tokenizer::FromFile(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("model.type"));

  std::ofstream(path) << BuildFixture(StandardSpec()).dump();
  absl::StatusOr<Tokenizer> good = Tokenizer::FromFile(path);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->Encode("hello world"), (Ids{259, 264}));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace engram
