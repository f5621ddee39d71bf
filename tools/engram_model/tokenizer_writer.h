// Writes a trained byte-level BPE as Hugging Face tokenizer files, in the form the Llama 3 and
// DeepSeek V3 tokenizers use (Split(regex, Isolated) + ByteLevel(use_regex=false) pre-tokenizer,
// ByteLevel decoder, special tokens as added_tokens after the BPE vocabulary, a
// TemplateProcessing post-processor that prepends BOS). A generated model's tokenizer therefore
// goes through exactly the code paths a real checkpoint's does.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tools/engram_model/bpe_trainer.h"

namespace engram::tool {

inline constexpr char kBosToken[] = "<|begin_of_text|>";
inline constexpr char kEosToken[] = "<|end_of_text|>";
inline constexpr char kPadToken[] = "<|pad|>";

struct TokenizerSpec {
  BpeVocab bpe;
  // Added special tokens, ids following the BPE tokens in this order. Always ends with
  // BOS, EOS, PAD; may start with "<|reserved_special_token_<i>|>" fillers when the corpus
  // ran out of merges before the requested vocabulary size.
  std::vector<std::string> specials;
  int64_t bos_id = 0, eos_id = 0, pad_id = 0;
  int64_t vocab_size() const { return static_cast<int64_t>(bpe.tokens.size() + specials.size()); }
};

// Trains on the built-in corpus to a total of `vocab_size` ids (BPE + specials).
absl::StatusOr<TokenizerSpec> BuildTokenizer(int64_t vocab_size);

// Writes <dir>/tokenizer.json and <dir>/tokenizer_config.json.
absl::Status WriteTokenizerFiles(const std::string& dir, const TokenizerSpec& spec,
                                 int64_t model_max_length);

}  // namespace engram::tool
