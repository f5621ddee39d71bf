// The BPE model of tokenizer.json: vocab, ranked merges and a per-word result cache.
//
// Given one pre-token, BPE starts from its characters and repeatedly applies the
// lowest-ranked merge (leftmost on ties) until none applies, exactly as HF tokenizers'
// `Word::merge_all`. Words repeat heavily in real text, so results are cached; the cache is
// sharded behind mutexes so concurrent Encode calls on one tokenizer stay cheap.
#ifndef ENGRAM_SERVER_TOKENIZER_BPE_H_
#define ENGRAM_SERVER_TOKENIZER_BPE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "server/tokenizer/json_util.h"

namespace engram {

class BpeModel {
 public:
  // Parses tokenizer.json's `model` object (type "BPE"). `path` names it in errors.
  static absl::StatusOr<BpeModel> FromJson(const tokenizer_internal::Json& json,
                                           std::string_view path);

  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Appends the ids of one pre-token. Thread-safe.
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string_view> IdToToken(int32_t id) const;
  // Largest id in the vocab, -1 when it is empty.
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

  // Number of words currently cached (for tests and metrics).
  size_t CacheSize() const;

 private:
  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };
  struct Cache;

  BpeModel();
  void MergeWord(std::string_view word, std::vector<int32_t>* out) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;  // key: left id << 32 | right id
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace engram

#endif  // ENGRAM_SERVER_TOKENIZER_BPE_H_
