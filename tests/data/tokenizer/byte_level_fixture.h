// Builds small byte-level BPE tokenizer.json documents for the tokenizer, streaming-decode and
// compressed-id tests.
//
// A real byte-level vocab needs all 256 byte characters, which is unreadable written out by
// hand, so the fixture is generated: ids 0..255 are the byte characters with id == byte value
// (so the id of a lone byte is obvious in a test), then one id per merge result in merge
// order, then `extra_vocab`, then the added tokens. The GPT-2 byte map is re-derived here
// from its definition rather than taken from server/tokenizer, so the tests also check it.
#ifndef ENGRAM_TESTS_DATA_TOKENIZER_BYTE_LEVEL_FIXTURE_H_
#define ENGRAM_TESTS_DATA_TOKENIZER_BYTE_LEVEL_FIXTURE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace engram::testing {

// GPT-2 bytes_to_unicode(): printable Latin-1 bytes stand for themselves; the other bytes
// get U+0100, U+0101, ... in byte order.
inline std::string FixtureByteChar(unsigned b) {
  auto printable = [](unsigned x) {
    return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
  };
  unsigned cp = b;
  if (!printable(b)) {
    unsigned n = 0;
    for (unsigned x = 0; x < b; ++x) n += printable(x) ? 0 : 1;
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

inline std::string ToByteLevel(std::string_view raw) {
  std::string out;
  for (char c : raw) out += FixtureByteChar(static_cast<unsigned char>(c));
  return out;
}

struct FixtureSpec {
  std::vector<std::pair<std::string, std::string>> merges;  // raw byte strings
  std::vector<std::string> extra_vocab;                     // raw byte strings, no merges
  nlohmann::json added_tokens = nlohmann::json::array();    // HF added_tokens (ids given)
  nlohmann::json normalizer = nullptr;
  nlohmann::json pre_tokenizer = {{"type", "ByteLevel"},
                                  {"add_prefix_space", false},
                                  {"trim_offsets", true},
                                  {"use_regex", true}};
  nlohmann::json post_processor = nullptr;
  nlohmann::json decoder = {{"type", "ByteLevel"}};
  bool ignore_merges = false;
  bool pair_merges = false;  // write merges as [a, b] instead of "a b"
};

inline nlohmann::json BuildFixture(const FixtureSpec& spec) {
  nlohmann::json vocab = nlohmann::json::object();
  int next_id = 0;
  for (unsigned b = 0; b < 256; ++b) vocab[FixtureByteChar(b)] = next_id++;
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : spec.merges) {
    const std::string left = ToByteLevel(a);
    const std::string right = ToByteLevel(b);
    if (spec.pair_merges) {
      merges.push_back({left, right});
    } else {
      merges.push_back(left + " " + right);
    }
    const std::string merged = left + right;
    if (!vocab.contains(merged)) vocab[merged] = next_id++;
  }
  for (const std::string& raw : spec.extra_vocab) vocab[ToByteLevel(raw)] = next_id++;
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", spec.added_tokens},
      {"normalizer", spec.normalizer},
      {"pre_tokenizer", spec.pre_tokenizer},
      {"post_processor", spec.post_processor},
      {"decoder", spec.decoder},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", spec.ignore_merges},
        {"vocab", vocab},
        {"merges", merges}}},
  };
}

inline nlohmann::json AddedTokenJson(int id, std::string content, bool special) {
  return {
      {"id", id},        {"content", std::move(content)}, {"single_word", false}, {"lstrip", false},
      {"rstrip", false}, {"normalized", !special},        {"special", special}};
}

// The standard fixture most tests use. Ids (by construction above):
//   0..255 bytes; 256 "he", 257 "ll", 258 "hell", 259 "hello", 260 " w", 261 "or",
//   262 " wor", 263 "ld", 264 " world", 265 "  ", 266 "el", 267 "\n\n", 268 "\r\n",
//   269 "ð", 270 "É", 271 "é", 272 "ab";
//   added: 273 "<|bos|>" (special), 274 "<|eos|>" (special), 275 "<tool>" (not special).
inline FixtureSpec StandardSpec() {
  FixtureSpec spec;
  spec.merges = {{"h", "e"},       {"l", "l"},   {"he", "ll"}, {"hell", "o"},    {" ", "w"},
                 {"o", "r"},       {" w", "or"}, {"l", "d"},   {" wor", "ld"},   {" ", " "},
                 {"e", "l"},       {"\n", "\n"}, {"\r", "\n"}, {"\xC3", "\xB0"}, {"\xC3", "\x89"},
                 {"\xC3", "\xA9"}, {"a", "b"}};
  spec.added_tokens = nlohmann::json::array({AddedTokenJson(273, "<|bos|>", true),
                                             AddedTokenJson(274, "<|eos|>", true),
                                             AddedTokenJson(275, "<tool>", false)});
  return spec;
}

}  // namespace engram::testing

#endif  // ENGRAM_TESTS_DATA_TOKENIZER_BYTE_LEVEL_FIXTURE_H_
