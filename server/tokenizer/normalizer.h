// Text normalizers with Hugging Face tokenizers semantics.
//
// Two users: the tokenizer.json `normalizer` field (Qwen uses NFC; Llama 3 and DeepSeek-V3 use
// none) and the Engram compressed-id table, whose key normalization is an HF normalizer
// Sequence (NFKC, NFD, StripAccents, Lowercase, Replace, Strip). One implementation serves both
// so the table sees exactly the transformations the reference applies.
#ifndef ENGRAM_SERVER_TOKENIZER_NORMALIZER_H_
#define ENGRAM_SERVER_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/tokenizer/json_util.h"
#include "server/tokenizer/regex.h"

namespace engram {

class Normalizer {
 public:
  // Parses tokenizer.json's `normalizer` value (JSON null: the identity). `path` names the
  // field in errors.
  static absl::StatusOr<Normalizer> FromJson(const tokenizer_internal::Json& json,
                                             std::string_view path);

  // Builders; steps run in the order they were added.
  Normalizer& AddNfc() { return Add(Step::kNfc); }
  Normalizer& AddNfd() { return Add(Step::kNfd); }
  Normalizer& AddNfkc() { return Add(Step::kNfkc); }
  Normalizer& AddNfkd() { return Add(Step::kNfkd); }
  Normalizer& AddLowercase() { return Add(Step::kLowercase); }
  // Removes General_Category Mark characters (HF StripAccents; pair it with NFD).
  Normalizer& AddStripAccents() { return Add(Step::kStripAccents); }
  // Removes White_Space characters at the chosen ends.
  Normalizer& AddStrip(bool left, bool right);
  // Replaces every match of `pattern` with the literal `content`.
  Normalizer& AddReplace(std::shared_ptr<const Regex> pattern, std::string content);
  Normalizer& AddPrepend(std::string prefix);

  bool empty() const { return steps_.empty(); }

  // Precondition: text is valid UTF-8; the result is valid UTF-8.
  std::string Normalize(std::string_view text) const;

 private:
  struct Step {
    enum Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStripAccents, kStrip, kReplace, kPrepend };
    Kind kind = kNfc;
    bool left = false;
    bool right = false;
    std::shared_ptr<const Regex> pattern;
    std::string content;
  };

  Normalizer& Add(Step::Kind kind) {
    Step step;
    step.kind = kind;
    steps_.push_back(std::move(step));
    return *this;
  }
  static absl::Status Parse(const tokenizer_internal::Json& json, std::string_view path,
                            Normalizer* out);

  std::vector<Step> steps_;
};

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_NORMALIZER_H_
