// Engram compressed-id table tests: the key normalizer, grouping of whitespace, case and
// accent variants, the raw-token key for partial characters, first-appearance numbering,
// and validation of shipped tables.
#include "server/memory/compress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/data/tokenizer/byte_level_fixture.h"

namespace engram {
namespace {

using ::testing::HasSubstr;

Tokenizer Standard() {
  absl::StatusOr<Tokenizer> t =
      Tokenizer::FromJson(testing::BuildFixture(testing::StandardSpec()).dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

TEST(CompressKeyTest, NormalizesLikeTheReference) {
  EXPECT_EQ(NormalizeCompressKey("Hello"), "hello");
  EXPECT_EQ(NormalizeCompressKey("  Hello\t\tWorld \n"), "hello world");
  EXPECT_EQ(NormalizeCompressKey("É"), "e");
  EXPECT_EQ(NormalizeCompressKey("e\xCC\x81"), "e");
  EXPECT_EQ(NormalizeCompressKey("ﬁ"), "fi");        // NFKC
  EXPECT_EQ(NormalizeCompressKey("Ǆ"), "dz");        // NFKC → DŽ, then the caron is stripped
  EXPECT_EQ(NormalizeCompressKey("ＡＢＣ"), "abc");  // full width
  EXPECT_EQ(NormalizeCompressKey("Straße"), "straße");
  EXPECT_EQ(NormalizeCompressKey("İ"), "i");
  EXPECT_EQ(NormalizeCompressKey("ΣΑΣ"), "σασ");    // per character: no final sigma
  EXPECT_EQ(NormalizeCompressKey("हिन्दी"), "हनद");  // all marks (Mn and Mc) are stripped
  // Whitespace-only text keeps exactly one space.
  EXPECT_EQ(NormalizeCompressKey(" "), " ");
  EXPECT_EQ(NormalizeCompressKey("\n\n"), " ");
  EXPECT_EQ(NormalizeCompressKey("\t"), " ");
  EXPECT_EQ(NormalizeCompressKey(" \r\n\t "), " ");
  EXPECT_EQ(NormalizeCompressKey("\xC2\xA0"), " ");      // NBSP → NFKC space
  EXPECT_EQ(NormalizeCompressKey("\xE3\x80\x80"), " ");  // ideographic space
  // White_Space that is not [ \t\r\n] is stripped away entirely: the caller falls back.
  EXPECT_EQ(NormalizeCompressKey("\xC2\x85"), "");
  EXPECT_EQ(NormalizeCompressKey(""), "");
  EXPECT_EQ(NormalizeCompressKey("\xCC\x81"), "");  // a lone combining mark
}

TEST(CompressTableTest, GroupsWhitespaceCaseAndAccents) {
  const Tokenizer t = Standard();
  const CompressTable table = BuildCompressTable(t);
  ASSERT_EQ(table.ids.size(), static_cast<size_t>(t.vocab_size()));
  const auto& c = table.ids;
  // " ", "  ", "\n\n", "\t", "\r\n", "\n" all become " ".
  EXPECT_EQ(c[' '], c[265]);
  EXPECT_EQ(c[' '], c[267]);
  EXPECT_EQ(c[' '], c['\t']);
  EXPECT_EQ(c[' '], c[268]);
  EXPECT_EQ(c[' '], c['\n']);
  // Case and accents fold: e, E, é, É share one id.
  EXPECT_EQ(c['e'], c['E']);
  EXPECT_EQ(c['e'], c[271]);
  EXPECT_EQ(c['e'], c[270]);
  EXPECT_NE(c['e'], c['a']);
  // Words: " world" strips to "world"; "hello" stays distinct.
  EXPECT_NE(c[259], c[264]);
  EXPECT_EQ(c['h'], c['H']);
}

TEST(CompressTableTest, PartialCharactersAreKeyedByTheirRawToken) {
  const Tokenizer t = Standard();
  const CompressTable table = BuildCompressTable(t);
  const auto& c = table.ids;
  // A lone 0xE4 decodes to U+FFFD, so its key is the raw vocab string "ä", not "a".
  EXPECT_NE(c[0xE4], c['a']);
  // Distinct fragments stay distinct even though all decode to U+FFFD.
  EXPECT_NE(c[0xE4], c[0xE5]);
  EXPECT_NE(c[0x80], c[0x81]);
  // The reference's quirk: lone byte 0xF0 has raw token "ð", which is also the normalized
  // text of the whole character "ð" (C3 B0, id 269), so the two share an id.
  EXPECT_EQ(t.IdToToken(0xF0), "ð");
  EXPECT_EQ(c[0xF0], c[269]);
}

TEST(CompressTableTest, IdsAreNumberedByFirstAppearance) {
  const Tokenizer t = Standard();
  const CompressTable table = BuildCompressTable(t);
  int64_t next = 0;
  for (int64_t id : table.ids) {
    ASSERT_LE(id, next);  // either seen before or exactly the next new id
    if (id == next) ++next;
  }
  EXPECT_EQ(table.num_compressed, next);
  EXPECT_EQ(table.ids[0], 0);
  EXPECT_LT(table.num_compressed, t.vocab_size());
  // Added tokens take part too; "<|bos|>" and "<|eos|>" differ.
  EXPECT_NE(table.ids[273], table.ids[274]);
}

TEST(CompressTableTest, FromIdsValidates) {
  absl::StatusOr<CompressTable> ok = CompressTableFromIds({0, 1, 1, 5, 2}, 5, "x.safetensors");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->num_compressed, 6);
  EXPECT_EQ(ok->ids.size(), 5u);

  absl::StatusOr<CompressTable> short_table = CompressTableFromIds({0, 1}, 5, "x.safetensors");
  ASSERT_FALSE(short_table.ok());
  EXPECT_EQ(short_table.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(short_table.status().message()), HasSubstr("x.safetensors"));
  EXPECT_THAT(std::string(short_table.status().message()), HasSubstr("5"));

  absl::StatusOr<CompressTable> negative = CompressTableFromIds({0, -3, 1}, 3, "y.safetensors");
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("y.safetensors"));
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("entry 1"));
}

}  // namespace
}  // namespace engram

namespace engram {
namespace {

TEST(CompressTableTest, IdsPastTheTokenizerShareTheEmptyKey) {
  const Tokenizer t = Standard();
  const int64_t known = t.vocab_size();
  const CompressTable base = BuildCompressTable(t);
  const CompressTable padded = BuildCompressTable(t, known + 5);
  ASSERT_EQ(padded.ids.size(), static_cast<size_t>(known + 5));
  // The tokenizer's own ids keep their ids; the five padding ids decode to "" and share one new
  // compressed id (no token of this tokenizer decodes to "").
  for (int64_t i = 0; i < known; ++i) ASSERT_EQ(padded.ids[i], base.ids[i]) << i;
  for (int64_t i = known; i < known + 5; ++i) EXPECT_EQ(padded.ids[i], base.num_compressed) << i;
  EXPECT_EQ(padded.num_compressed, base.num_compressed + 1);
}

}  // namespace
}  // namespace engram
