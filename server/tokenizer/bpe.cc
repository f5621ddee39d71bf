// BPE vocab/merge loading and the merge loop (HF tokenizers models/bpe/{model,word}.rs).
#include "server/tokenizer/bpe.h"

#include <array>
#include <cstdio>
#include <mutex>
#include <queue>
#include <utility>

#include "absl/hash/hash.h"
#include "server/tokenizer/unicode.h"
#include "server/util/str_cat.h"

namespace engram {

using tokenizer_internal::Abbrev;
using tokenizer_internal::AsAbsl;
using tokenizer_internal::FieldError;
using tokenizer_internal::FindField;
using tokenizer_internal::GetBool;
using tokenizer_internal::IndexPath;
using tokenizer_internal::JoinPath;
using tokenizer_internal::Json;

namespace {

// Words longer than this are not cached (HF uses the same cut-off), so one huge
// whitespace-free blob cannot evict everything else.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kCacheShards = 16;
constexpr size_t kCacheEntriesPerShard = 4096;

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

struct BpeModel::Cache {
  struct Shard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  std::array<Shard, kCacheShards> shards;

  Shard& For(std::string_view word) {
    return shards[absl::Hash<absl::string_view>{}(AsAbsl(word)) % kCacheShards];
  }
};

BpeModel::BpeModel() : cache_(std::make_unique<Cache>()) {}
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;
BpeModel::~BpeModel() = default;

absl::StatusOr<BpeModel> BpeModel::FromJson(const Json& json, std::string_view path) {
  BpeModel m;
  if (const Json* dropout = FindField(json, "dropout");
      dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return FieldError(
        JoinPath(path, "dropout"),
        StrCat("BPE dropout is random at inference; expected null, got ", Abbrev(*dropout)));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const Json* v = FindField(json, key); v != nullptr) {
      if (!v->is_string()) return FieldError(JoinPath(path, key), "expected a string or null");
      (key[0] == 'c' ? m.continuing_subword_prefix_ : m.end_of_word_suffix_) =
          v->get<std::string>();
    }
  }
  absl::StatusOr<bool> flag = GetBool(json, "ignore_merges", path, false);
  if (!flag.ok()) return flag.status();
  m.ignore_merges_ = *flag;
  if (flag = GetBool(json, "fuse_unk", path, false); !flag.ok()) return flag.status();
  m.fuse_unk_ = *flag;
  if (flag = GetBool(json, "byte_fallback", path, false); !flag.ok()) return flag.status();
  m.byte_fallback_ = *flag;

  const std::string vocab_path = JoinPath(path, "vocab");
  const Json* vocab = FindField(json, "vocab");
  if (vocab == nullptr || !vocab->is_object()) {
    return FieldError(vocab_path, "expected an object mapping token strings to ids");
  }
  m.vocab_.reserve(vocab->size());
  for (const auto& [token, id_json] : vocab->items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() > tokenizer_internal::kMaxTokenId) {
      return FieldError(vocab_path,
                        StrCat("token \"", token, "\" has id ", Abbrev(id_json), ", expected [0, ",
                               tokenizer_internal::kMaxTokenId, "]"));
    }
    const auto id = static_cast<int32_t>(id_json.get<int64_t>());
    m.vocab_[token] = id;
    if (static_cast<size_t>(id) >= m.id_to_token_.size()) {
      m.id_to_token_.resize(id + 1);
      m.has_id_.resize(id + 1);
    }
    m.id_to_token_[id] = token;
    m.has_id_[id] = true;
  }

  if (const Json* unk = FindField(json, "unk_token"); unk != nullptr) {
    if (!unk->is_string()) return FieldError(JoinPath(path, "unk_token"), "expected a string");
    const auto it = m.vocab_.find(unk->get<std::string>());
    if (it == m.vocab_.end()) {
      return FieldError(JoinPath(path, "unk_token"),
                        StrCat("\"", unk->get<std::string>(), "\" is not in the vocab"));
    }
    m.unk_id_ = it->second;
  }

  const std::string merges_path = JoinPath(path, "merges");
  const Json* merges = FindField(json, "merges");
  if (merges != nullptr && !merges->is_array()) return FieldError(merges_path, "expected an array");
  const size_t num_merges = merges == nullptr ? 0 : merges->size();
  m.merges_.reserve(num_merges);
  const size_t prefix_len = m.continuing_subword_prefix_.size();
  for (size_t rank = 0; rank < num_merges; ++rank) {
    const Json& entry = (*merges)[rank];
    std::string left;
    std::string right;
    // Older files write "a b"; newer ones write ["a", "b"] so tokens may contain spaces.
    if (entry.is_string()) {
      const std::string& s = entry.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return FieldError(IndexPath(merges_path, rank),
                          StrCat("expected \"left right\", got ", Abbrev(entry)));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return FieldError(IndexPath(merges_path, rank),
                        StrCat("expected \"left right\" or [left, right], got ", Abbrev(entry)));
    }
    std::string merged = left;
    merged.append(right.size() >= prefix_len && right.starts_with(m.continuing_subword_prefix_)
                      ? right.substr(prefix_len)
                      : right);
    const auto l = m.vocab_.find(left);
    const auto r = m.vocab_.find(right);
    const auto n = m.vocab_.find(merged);
    if (l == m.vocab_.end() || r == m.vocab_.end() || n == m.vocab_.end()) {
      const std::string& missing = l == m.vocab_.end()   ? left
                                   : r == m.vocab_.end() ? right
                                                         : merged;
      return FieldError(IndexPath(merges_path, rank),
                        StrCat("token \"", missing, "\" is not in the vocab"));
    }
    // A repeated pair takes its last rank, as HF's HashMap collect does.
    m.merges_.insert_or_assign(PairKey(l->second, r->second),
                               MergeInfo{static_cast<int32_t>(rank), n->second});
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(AsAbsl(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string_view> BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) {
    return std::nullopt;
  }
  return std::string_view(id_to_token_[id]);
}

size_t BpeModel::CacheSize() const {
  size_t n = 0;
  for (Cache::Shard& shard : cache_->shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    n += shard.map.size();
  }
  return n;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  // Llama 3: a pre-token that is itself a vocab entry is emitted whole, even when the merges
  // would never build it.
  if (ignore_merges_) {
    if (const auto it = vocab_.find(AsAbsl(word)); it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    Cache::Shard& shard = cache_->For(word);
    std::lock_guard<std::mutex> lock(shard.mu);
    if (const auto it = shard.map.find(AsAbsl(word)); it != shard.map.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out->size();
  MergeWord(word, out);
  if (cacheable) {
    Cache::Shard& shard = cache_->For(word);
    std::lock_guard<std::mutex> lock(shard.mu);
    // Clearing when full keeps memory bounded and lets the cache follow a shifting workload.
    if (shard.map.size() >= kCacheEntriesPerShard) shard.map.clear();
    shard.map.try_emplace(std::string(word), out->begin() + static_cast<ptrdiff_t>(first),
                          out->end());
  }
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id) {
    const auto pos = static_cast<int32_t>(symbols.size());
    if (pos > 0) symbols.back().next = pos;
    symbols.push_back({id, pos - 1, -1, true});
  };

  std::optional<int32_t> pending_unk;
  std::string piece;
  size_t i = 0;
  while (i < word.size()) {
    const size_t len = ScanUtf8(word.substr(i)).len;
    const bool is_first = i == 0;
    const bool is_last = i + len == word.size();
    piece.clear();
    if (!is_first) piece.append(continuing_subword_prefix_);
    piece.append(word.substr(i, len));
    if (is_last) piece.append(end_of_word_suffix_);
    i += len;
    if (const auto it = vocab_.find(piece); it != vocab_.end()) {
      if (pending_unk) add(*std::exchange(pending_unk, std::nullopt));
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (char c : word.substr(i - len, len)) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(c));
        const auto it = vocab_.find(absl::string_view(name));
        if (it == vocab_.end()) break;
        bytes.push_back(it->second);
      }
      if (bytes.size() == len) {
        if (pending_unk) add(*std::exchange(pending_unk, std::nullopt));
        for (int32_t id : bytes) add(id);
        continue;
      }
    }
    // Without an unk token HF silently drops characters missing from the vocab.
    if (unk_id_) {
      if (pending_unk && !fuse_unk_) add(*pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk) add(*pending_unk);

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push = [&](int32_t pos) {
    const Symbol& left = symbols[pos];
    if (left.next < 0) return;
    const auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push(pos);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Entries go stale when a neighbour merged first; the pair's current merge must match.
    const auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.alive) out->push_back(s.id);
  }
}

}  // namespace engram
