// Byte-level BPE training for generated models. A generated model needs a real tokenizer so that
// Engram's compressed-id table, n-gram hashing and multilingual round trips are exercised on
// realistic token distributions; the merges are learned here from the corpus the project ships
// (tools/engram_model/corpus), with the same GPT-2 pre-tokenizer regex the tokenizer.json
// declares, so tokenizer.json encodes exactly as it was trained.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace engram::tool {

// The GPT-2 pre-tokenizer pattern (what Hugging Face ByteLevel(use_regex=true) applies).
inline constexpr char kGpt2SplitPattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Splits text into pre-tokens with kGpt2SplitPattern (PCRE2, UTF + Unicode properties), keeping
// unmatched gaps as pieces of their own (Hugging Face Split behaviour "Isolated").
class Pretokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Pretokenizer>> Create();
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  absl::Status Split(std::string_view text, std::vector<std::string_view>* out) const;

 private:
  Pretokenizer() = default;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Ids 0..255 are the single bytes in byte order; merged tokens follow in merge order.
struct BpeVocab {
  std::vector<std::string> tokens;                  // id -> raw bytes
  std::vector<std::pair<int32_t, int32_t>> merges;  // rank order; ids into `tokens`
};

// Learns merges until the vocabulary holds `vocab_size` tokens (>= 256) or no pair is left.
// Each step merges the most frequent adjacent pair; ties go to the smaller (left id, right id),
// so training is deterministic.
absl::StatusOr<BpeVocab> TrainByteLevelBpe(const std::vector<std::string_view>& texts,
                                           size_t vocab_size);

// GPT-2's bytes_to_unicode: byte b as the printable code point that stands for it.
std::string ByteLevelToken(std::string_view bytes);

// The corpus shipped with the tool (compiled in from tools/engram_model/corpus/*.txt).
std::vector<std::string_view> BuiltinCorpus();

}  // namespace engram::tool
