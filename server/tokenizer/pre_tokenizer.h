// Pre-tokenizers: split normalized text into the "words" BPE merges within.
//
// BPE never merges across a pre-token boundary, so these splits decide most of the token ids.
// Supported are the components byte-level models ship: `ByteLevel` (optionally with GPT-2's
// own split regex) and `Sequence`s of `Split` (Llama 3, Qwen 2/3, DeepSeek-V3) followed by
// `ByteLevel`. Every step maps each current piece to sub-pieces, as HF's PreTokenizedString
// does, so nested Sequences flatten into one list of steps.
#ifndef ENGRAM_SERVER_TOKENIZER_PRE_TOKENIZER_H_
#define ENGRAM_SERVER_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/tokenizer/json_util.h"
#include "server/tokenizer/regex.h"

namespace engram {

// HF `SplitDelimiterBehavior`: what happens to the text a Split pattern matched.
enum class SplitBehavior {
  kRemoved,             // dropped
  kIsolated,            // its own piece
  kMergedWithPrevious,  // appended to the piece before it
  kMergedWithNext,      // prepended to the piece after it
  kContiguous,          // consecutive matches form one piece
};

// GPT-2's pre-tokenization regex, used by ByteLevel with use_regex = true.
inline constexpr std::string_view kGpt2SplitPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class PreTokenizer {
 public:
  // Parses tokenizer.json's `pre_tokenizer` value (JSON null: the whole text is one word).
  static absl::StatusOr<PreTokenizer> FromJson(const tokenizer_internal::Json& json,
                                               std::string_view path);

  // Builders (used by tests and by FromJson).
  PreTokenizer& AddSplit(std::shared_ptr<const Regex> pattern, SplitBehavior behavior, bool invert);
  // `split_regex` null: no splitting (HF use_regex = false).
  PreTokenizer& AddByteLevel(bool add_prefix_space, std::shared_ptr<const Regex> split_regex);

  // Appends the pre-tokens of `text` (valid UTF-8) to *out. After a ByteLevel step the
  // pre-tokens are in byte-level characters, ready for the BPE vocab.
  void Split(std::string_view text, std::vector<std::string>* out) const;

 private:
  struct Step {
    enum Kind { kSplit, kByteLevel } kind = kSplit;
    std::shared_ptr<const Regex> pattern;  // kSplit: the pattern; kByteLevel: optional regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  static absl::Status Parse(const tokenizer_internal::Json& json, std::string_view path,
                            PreTokenizer* out);

  std::vector<Step> steps_;
};

// Splits `text` at the matches of `pattern` with HF `NormalizedString::split` semantics;
// empty pieces are dropped. Exposed for tests.
void SplitWithPattern(std::string_view text, const Regex& pattern, SplitBehavior behavior,
                      bool invert, std::vector<std::string>* out);

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_PRE_TOKENIZER_H_
