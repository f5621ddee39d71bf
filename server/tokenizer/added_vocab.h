// Added tokens (tokenizer.json `added_tokens`): chat markers, BOS/EOS, tool tags.
//
// They must never be split by BPE: HF cuts the input at every added token before normalizing
// and pre-tokenizing, matching leftmost-longest, so "<|im_start|>" always becomes one id. Tokens
// flagged `normalized` are matched in the normalized text (their pattern normalized too);
// the others in the raw text. This class reproduces HF's AddedVocabulary::find_matches,
// including lstrip/rstrip (absorb neighbouring whitespace) and single_word.
#ifndef ENGRAM_SERVER_TOKENIZER_ADDED_VOCAB_H_
#define ENGRAM_SERVER_TOKENIZER_ADDED_VOCAB_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "server/tokenizer/json_util.h"
#include "server/tokenizer/normalizer.h"

namespace engram {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

class AddedVocab {
 public:
  // Parses the `added_tokens` array (JSON null: none). Patterns of `normalized` tokens are
  // run through `normalizer` so they match normalized text.
  static absl::StatusOr<AddedVocab> FromJson(const tokenizer_internal::Json& json,
                                             std::string_view path, const Normalizer& normalizer);

  // A stretch of the input: an added token (id >= 0) or ordinary text (id < 0).
  struct Segment {
    size_t begin;
    size_t end;
    int32_t id;
  };

  // Cuts `text` at the added tokens of one pass: normalized_pass false matches the tokens
  // with normalized = false (on raw text), true the others (on normalized text). Appends
  // non-empty segments covering `text` except whitespace absorbed by lstrip/rstrip.
  void Split(std::string_view text, bool normalized_pass, std::vector<Segment>* out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* FindById(int32_t id) const;
  std::optional<int32_t> FindByContent(std::string_view content) const;

 private:
  // Patterns bucketed by first byte, longest first, so the first hit is the longest match.
  struct Matcher {
    std::array<std::vector<uint32_t>, 256> buckets;  // indices into patterns/token_index
    std::vector<std::string> patterns;
    std::vector<uint32_t> token_index;  // into tokens_
    void Add(std::string pattern, uint32_t token);
    void Finish();
  };

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, uint32_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  Matcher raw_;
  Matcher normalized_;
};

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_ADDED_VOCAB_H_
