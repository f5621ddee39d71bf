// The Engram compressed-id table (DESIGN.md §2.1 step 1).
//
// Engram hashes n-grams of *compressed* ids so that surface variants of one token ("The",
// " the", "THE", "é"/"e") share memory rows. The map must be bit-identical to the reference
// (deepseek-ai/Engram engram_demo_v1.py, CompressedTokenizer) or every hashed row address
// differs from the trained table, so this follows it literally: decode each id alone, key it
// by an HF-normalized form of its text, and number distinct keys in order of first appearance.
#ifndef ENGRAM_SERVER_MEMORY_COMPRESS_H_
#define ENGRAM_SERVER_MEMORY_COMPRESS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/tokenizer/tokenizer.h"

namespace engram {

struct CompressTable {
  std::vector<int64_t> ids;    // raw token id → compressed id, one per id of the model's vocab
  int64_t num_compressed = 0;  // number of distinct compressed ids (max id + 1)
};

// Builds the table from the tokenizer as the reference does, for ids [0, vocab_size) (the
// tokenizer's own size when vocab_size < 0). Ids past the tokenizer (an embedding padded to a
// round size, as DeepSeek-V3's 129280 over 128815 tokens) decode to "" like any unknown id in
// Hugging Face's decode, so they share the key "" (DESIGN §2.1.1 read literally).
CompressTable BuildCompressTable(const Tokenizer& tokenizer, int64_t vocab_size = -1);

// Validates a table shipped with the model (engram-compress.safetensors): one entry per raw
// id (size == vocab_size) and no negative ids; num_compressed = max + 1. Errors name `source`.
absl::StatusOr<CompressTable> CompressTableFromIds(std::vector<int64_t> ids, int64_t vocab_size,
                                                   std::string_view source);

// The reference's key normalizer on one decoded token text: NFKC, NFD, strip marks,
// lowercase, runs of [ \t\r\n] → " ", a lone " " kept, White_Space stripped at both ends.
// Returns "" when nothing is left (the caller then keys by the text itself). For tests.
std::string NormalizeCompressKey(std::string_view text);

}  // namespace engram

#endif  // ENGRAM_SERVER_MEMORY_COMPRESS_H_
