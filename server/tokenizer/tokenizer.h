// Hugging Face tokenizer.json support for byte-level BPE models (GPT-2, Llama 3, Qwen 2/3,
// DeepSeek-V3): the server's only way from text to token ids and back.
//
// Ids must equal what HF `tokenizers` produces for the same file, because the model was
// trained on those ids and the Engram tables are addressed by them. The pipeline is HF's:
// added tokens cut the text first, the rest is normalized, pre-tokenized and BPE-merged, and
// the post-processor template adds BOS/EOS. Components outside that family are rejected at
// load time with an error naming the JSON field, rather than silently mis-tokenizing.
//
// Encoding and decoding are const and thread-safe; a Tokenizer is cheap to copy (shared
// immutable state).
#ifndef ENGRAM_SERVER_TOKENIZER_TOKENIZER_H_
#define ENGRAM_SERVER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/tokenizer/unicode.h"  // Utf8Lossy and friends

namespace engram {

class Tokenizer {
 public:
  // Loads a tokenizer.json. Errors name the file (and the field, for content errors).
  static absl::StatusOr<Tokenizer> FromFile(const std::string& path);
  static absl::StatusOr<Tokenizer> FromJson(std::string_view json);

  // Text → ids. Invalid UTF-8 in `text` is first replaced by U+FFFD (HF only accepts valid
  // strings). add_special_tokens applies the post-processor template (e.g. a leading BOS).
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = false) const;

  // Ids → the bytes they stand for, which may be invalid UTF-8 when a multi-byte character
  // is split across tokens or cut off. Unknown ids are skipped, as HF does.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // Decode() made valid UTF-8 the way HF/Python do (one U+FFFD per maximal invalid subpart).
  std::string DecodeLossy(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The raw vocab (or added-token) string, e.g. "Ġthe" for " the".
  std::optional<std::string_view> IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;

  // Like len(hf_tokenizer): one more than the largest id of the vocab and added tokens.
  int32_t vocab_size() const;
  // An added token flagged "special" (skipped by skip_special_tokens).
  bool IsSpecial(int32_t id) const;
  // An added token, special or not (never produced by BPE merges).
  bool IsAddedToken(int32_t id) const;

 private:
  struct Impl;
  friend class StreamDecoder;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

  std::shared_ptr<const Impl> impl_;
};

// Incremental detokenization for streaming responses. Push() returns the text that became
// complete with this id: it never returns part of a UTF-8 character, holding back a trailing
// incomplete sequence until later bytes complete it, and replaces bytes that can never form
// a character by U+FFFD, so every returned string is valid UTF-8. The concatenation of all
// Push() results and Flush() equals Tokenizer::DecodeLossy() of the same ids.
// Not thread-safe (one per sequence); it keeps the tokenizer's state alive.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  std::string Push(int32_t id);
  // Emits what is held back (as U+FFFD: the sequence ended mid-character) and resets.
  std::string Flush();

 private:
  std::shared_ptr<const Tokenizer::Impl> impl_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;  // bytes of an incomplete trailing character
};

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_TOKENIZER_H_
