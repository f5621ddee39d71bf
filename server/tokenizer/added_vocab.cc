// Added-token parsing and splitting (HF tokenizers tokenizer/added_vocabulary.rs).
#include "server/tokenizer/added_vocab.h"

#include <algorithm>
#include <utility>

#include "server/tokenizer/unicode.h"
#include "server/util/str_cat.h"

namespace engram {

using tokenizer_internal::Abbrev;
using tokenizer_internal::FieldError;
using tokenizer_internal::GetBool;
using tokenizer_internal::GetString;
using tokenizer_internal::IndexPath;
using tokenizer_internal::JoinPath;
using tokenizer_internal::Json;

namespace {

bool IsWordChar(char32_t cp) { return cp == '_' || IsAlphanumeric(cp); }

// The last character of s is a word character.
bool EndsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return IsWordChar(DecodeUtf8At(s, &start));
}

bool StartsWithWord(std::string_view s) {
  if (s.empty()) return false;
  size_t pos = 0;
  return IsWordChar(DecodeUtf8At(s, &pos));
}

}  // namespace

void AddedVocab::Matcher::Add(std::string pattern, uint32_t token) {
  if (pattern.empty()) return;  // would match everywhere
  const auto index = static_cast<uint32_t>(patterns.size());
  buckets[static_cast<unsigned char>(pattern[0])].push_back(index);
  patterns.push_back(std::move(pattern));
  token_index.push_back(token);
}

void AddedVocab::Matcher::Finish() {
  for (auto& bucket : buckets) {
    std::stable_sort(bucket.begin(), bucket.end(), [this](uint32_t a, uint32_t b) {
      return patterns[a].size() > patterns[b].size();
    });
  }
}

absl::StatusOr<AddedVocab> AddedVocab::FromJson(const Json& json, std::string_view path,
                                                const Normalizer& normalizer) {
  AddedVocab v;
  if (json.is_null()) return v;
  if (!json.is_array()) return FieldError(path, "expected an array");
  for (size_t i = 0; i < json.size(); ++i) {
    const Json& entry = json[i];
    const std::string entry_path = IndexPath(path, i);
    if (!entry.is_object()) return FieldError(entry_path, "expected an object");
    AddedToken t;
    const auto id = entry.find("id");
    if (id == entry.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
        id->get<int64_t>() > tokenizer_internal::kMaxTokenId) {
      return FieldError(JoinPath(entry_path, "id"),
                        StrCat("expected an id in [0, ", tokenizer_internal::kMaxTokenId, "], got ",
                               id == entry.end() ? "nothing" : Abbrev(*id)));
    }
    t.id = static_cast<int32_t>(id->get<int64_t>());
    absl::StatusOr<std::string> content = GetString(entry, "content", entry_path);
    if (!content.ok()) return content.status();
    t.content = *std::move(content);
    absl::StatusOr<bool> flag = GetBool(entry, "special", entry_path, false);
    if (!flag.ok()) return flag.status();
    t.special = *flag;
    struct {
      const char* key;
      bool* field;
      bool default_value;
    } const flags[] = {{"lstrip", &t.lstrip, false},
                       {"rstrip", &t.rstrip, false},
                       {"single_word", &t.single_word, false},
                       {"normalized", &t.normalized, !t.special}};
    for (const auto& f : flags) {
      if (flag = GetBool(entry, f.key, entry_path, f.default_value); !flag.ok()) {
        return flag.status();
      }
      *f.field = *flag;
    }
    const auto index = static_cast<uint32_t>(v.tokens_.size());
    v.by_id_[t.id] = index;
    v.by_content_[t.content] = t.id;
    if (t.normalized) {
      v.normalized_.Add(normalizer.empty() ? t.content : normalizer.Normalize(t.content), index);
    } else {
      v.raw_.Add(t.content, index);
    }
    v.tokens_.push_back(std::move(t));
  }
  v.raw_.Finish();
  v.normalized_.Finish();
  return v;
}

const AddedToken* AddedVocab::FindById(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocab::FindByContent(std::string_view content) const {
  const auto it = by_content_.find(tokenizer_internal::AsAbsl(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

void AddedVocab::Split(std::string_view text, bool normalized_pass,
                       std::vector<Segment>* out) const {
  const Matcher& m = normalized_pass ? normalized_ : raw_;
  size_t start_offset = 0;  // end of the last emitted token
  size_t i = 0;
  while (i < text.size()) {
    uint32_t hit = UINT32_MAX;
    for (uint32_t p : m.buckets[static_cast<unsigned char>(text[i])]) {
      if (text.substr(i).starts_with(m.patterns[p])) {
        hit = p;
        break;
      }
    }
    if (hit == UINT32_MAX) {
      ++i;
      continue;
    }
    const AddedToken& token = tokens_[m.token_index[hit]];
    size_t start = i;
    size_t stop = i + m.patterns[hit].size();
    // Matching resumes after this match even when single_word rejects it, as with HF's
    // non-overlapping Aho-Corasick iteration.
    i = stop;
    if (token.single_word) {
      const bool space_before = start == 0 || !EndsWithWord(text.substr(0, start));
      const bool space_after = stop == text.size() || !StartsWithWord(text.substr(stop));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) {
      size_t new_start = start;
      while (new_start > start_offset) {
        size_t prev = new_start - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        size_t pos = prev;
        if (!IsWhiteSpace(DecodeUtf8At(text, &pos))) break;
        new_start = prev;
      }
      start = new_start;
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t pos = stop;
        if (!IsWhiteSpace(DecodeUtf8At(text, &pos))) break;
        stop = pos;
      }
      i = stop;
    }
    if (start_offset < start) out->push_back({start_offset, start, -1});
    out->push_back({start, stop, token.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out->push_back({start_offset, text.size(), -1});
}

}  // namespace engram
