// Tokenizer assembly (tokenizer.json → components), the encode pipeline, the post-processor
// template and the decoder. See tokenizer.h for the contract.
#include "server/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "server/tokenizer/added_vocab.h"
#include "server/tokenizer/bpe.h"
#include "server/tokenizer/byte_level.h"
#include "server/tokenizer/json_util.h"
#include "server/tokenizer/normalizer.h"
#include "server/tokenizer/pre_tokenizer.h"
#include "server/util/str_cat.h"

namespace engram {

using tokenizer_internal::Abbrev;
using tokenizer_internal::FieldError;
using tokenizer_internal::FindField;
using tokenizer_internal::GetString;
using tokenizer_internal::IndexPath;
using tokenizer_internal::JoinPath;
using tokenizer_internal::Json;

namespace {

enum TokenFlags : uint8_t { kPresent = 1, kSpecial = 2, kAdded = 4 };

// One element of a post-processor template: fixed ids, or the encoded text itself.
struct TemplatePiece {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};

struct PostProcessor {
  bool has_template = false;
  std::vector<TemplatePiece> single;
};

absl::Status ParseTemplate(const Json& json, std::string_view path, PostProcessor* out) {
  const std::string single_path = JoinPath(path, "single");
  const Json* single = FindField(json, "single");
  if (single == nullptr || !single->is_array()) return FieldError(single_path, "expected an array");
  const Json* specials = FindField(json, "special_tokens");
  out->has_template = true;
  out->single.clear();
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& item = (*single)[i];
    const std::string item_path = IndexPath(single_path, i);
    if (FindField(item, "Sequence") != nullptr) {
      out->single.push_back({true, {}});
      continue;
    }
    const Json* special = FindField(item, "SpecialToken");
    if (special == nullptr) {
      return FieldError(item_path, StrCat("expected {\"Sequence\": ...} or "
                                          "{\"SpecialToken\": ...}, got ",
                                          Abbrev(item)));
    }
    absl::StatusOr<std::string> name =
        GetString(*special, "id", JoinPath(item_path, "SpecialToken"));
    if (!name.ok()) return name.status();
    const Json* entry = specials == nullptr ? nullptr : FindField(*specials, *name);
    const Json* ids = entry == nullptr ? nullptr : FindField(*entry, "ids");
    if (ids == nullptr || !ids->is_array()) {
      return FieldError(JoinPath(path, "special_tokens"),
                        StrCat("no ids for template token \"", *name, "\""));
    }
    TemplatePiece piece;
    for (const Json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return FieldError(JoinPath(path, "special_tokens"),
                          StrCat("bad id ", Abbrev(id), " for \"", *name, "\""));
      }
      piece.ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    out->single.push_back(std::move(piece));
  }
  return absl::OkStatus();
}

// Roberta/Bert processors: [cls] A [sep], each given as ["token", id].
absl::Status ParseClsSep(const Json& json, std::string_view path, PostProcessor* out) {
  out->has_template = true;
  out->single.clear();
  for (const char* key : {"cls", "sep"}) {
    const Json* v = FindField(json, key);
    if (v == nullptr || !v->is_array() || v->size() != 2 || !(*v)[1].is_number_integer() ||
        (*v)[1].get<int64_t>() < 0 || (*v)[1].get<int64_t>() > INT32_MAX) {
      return FieldError(JoinPath(path, key), "expected [\"token\", id]");
    }
    if (key[0] == 's') out->single.push_back({true, {}});
    out->single.push_back({false, {static_cast<int32_t>((*v)[1].get<int64_t>())}});
  }
  return absl::OkStatus();
}

absl::Status ParsePostProcessor(const Json& json, std::string_view path, PostProcessor* out) {
  if (json.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = GetString(json, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();  // offsets only; ids are unchanged
  if (*type == "TemplateProcessing") return ParseTemplate(json, path, out);
  if (*type == "RobertaProcessing" || *type == "BertProcessing") {
    return ParseClsSep(json, path, out);
  }
  if (*type == "Sequence") {
    const std::string field = JoinPath(path, "processors");
    const Json* list = FindField(json, "processors");
    if (list == nullptr || !list->is_array()) return FieldError(field, "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      if (absl::Status st = ParsePostProcessor((*list)[i], IndexPath(field, i), out); !st.ok()) {
        return st;
      }
    }
    return absl::OkStatus();
  }
  return FieldError(JoinPath(path, "type"), StrCat("unsupported post-processor type \"", *type,
                                                   "\" (supported: TemplateProcessing, ByteLevel, "
                                                   "RobertaProcessing, BertProcessing, Sequence)"));
}

// Returns true for a byte-level decoder, false for none (HF then joins tokens with spaces).
absl::StatusOr<bool> ParseDecoder(const Json& json, std::string_view path) {
  if (json.is_null()) return false;
  absl::StatusOr<std::string> type = GetString(json, "type", path);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return true;
  if (*type == "Sequence") {
    const std::string field = JoinPath(path, "decoders");
    const Json* list = FindField(json, "decoders");
    if (list == nullptr || !list->is_array() || list->empty()) {
      return FieldError(field, "expected a non-empty array");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      absl::StatusOr<bool> byte_level = ParseDecoder((*list)[i], IndexPath(field, i));
      if (!byte_level.ok()) return byte_level.status();
    }
    return true;
  }
  return FieldError(JoinPath(path, "type"),
                    StrCat("unsupported decoder type \"", *type,
                           "\" (supported: ByteLevel, Sequence of ByteLevel)"));
}

}  // namespace

struct Tokenizer::Impl {
  Impl(Normalizer n, PreTokenizer p, BpeModel m, AddedVocab a, PostProcessor pp, bool bl)
      : normalizer(std::move(n)),
        pre_tokenizer(std::move(p)),
        model(std::move(m)),
        added(std::move(a)),
        post(std::move(pp)),
        byte_level_decoder(bl) {}

  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  AddedVocab added;
  PostProcessor post;
  bool byte_level_decoder = true;
  int32_t vocab_size = 0;
  std::vector<uint8_t> flags;            // TokenFlags by id
  std::vector<std::string> token_bytes;  // what the decoder makes of each id

  // One id's decoder output, or nullptr when it is skipped.
  const std::string* Piece(int32_t id, bool skip_special) const {
    if (id < 0 || id >= vocab_size || !(flags[id] & kPresent)) return nullptr;
    if (skip_special && (flags[id] & kSpecial)) return nullptr;
    return &token_bytes[id];
  }
};

absl::StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(StrCat(path, ": cannot open tokenizer file"));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(StrCat(path, ": read error"));
  absl::StatusOr<Tokenizer> t = FromJson(buffer.str());
  if (!t.ok())
    return absl::Status(t.status().code(),
                        StrCat(path, ": ", tokenizer_internal::AsStd(t.status().message())));
  return t;
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view text) {
  Json json;
  try {
    json = Json::parse(text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(StrCat("tokenizer.json is not valid JSON: ", e.what()));
  }
  if (!json.is_object()) return absl::InvalidArgumentError("tokenizer.json: expected an object");

  try {
    const Json null_json;
    auto field = [&](const char* key) -> const Json& {
      const Json* v = FindField(json, key);
      return v == nullptr ? null_json : *v;
    };
    absl::StatusOr<Normalizer> normalizer = Normalizer::FromJson(field("normalizer"), "normalizer");
    if (!normalizer.ok()) return normalizer.status();
    absl::StatusOr<PreTokenizer> pre =
        PreTokenizer::FromJson(field("pre_tokenizer"), "pre_tokenizer");
    if (!pre.ok()) return pre.status();

    const Json* model_json = FindField(json, "model");
    if (model_json == nullptr || !model_json->is_object()) {
      return FieldError("model", "missing or not an object");
    }
    absl::StatusOr<std::string> model_type = GetString(*model_json, "type", "model");
    if (!model_type.ok()) return model_type.status();
    if (*model_type != "BPE") {
      return FieldError("model.type",
                        StrCat("unsupported model type \"", *model_type, "\" (supported: BPE)"));
    }
    absl::StatusOr<BpeModel> model = BpeModel::FromJson(*model_json, "model");
    if (!model.ok()) return model.status();
    absl::StatusOr<AddedVocab> added =
        AddedVocab::FromJson(field("added_tokens"), "added_tokens", *normalizer);
    if (!added.ok()) return added.status();
    PostProcessor post;
    if (absl::Status st = ParsePostProcessor(field("post_processor"), "post_processor", &post);
        !st.ok()) {
      return st;
    }
    absl::StatusOr<bool> byte_level = ParseDecoder(field("decoder"), "decoder");
    if (!byte_level.ok()) return byte_level.status();

    auto impl = std::make_shared<Impl>(*std::move(normalizer), *std::move(pre), *std::move(model),
                                       *std::move(added), std::move(post), *byte_level);
    int32_t max_id = impl->model.max_id();
    for (const AddedToken& t : impl->added.tokens()) max_id = std::max(max_id, t.id);
    impl->vocab_size = max_id + 1;
    impl->flags.assign(impl->vocab_size, 0);
    impl->token_bytes.resize(impl->vocab_size);
    for (int32_t id = 0; id < impl->vocab_size; ++id) {
      const AddedToken* added_token = impl->added.FindById(id);
      std::optional<std::string_view> token;
      if (added_token != nullptr) {
        token = added_token->content;
        impl->flags[id] |= kAdded | (added_token->special ? kSpecial : 0);
      } else {
        token = impl->model.IdToToken(id);
      }
      if (!token) continue;
      impl->flags[id] |= kPresent;
      std::string& bytes = impl->token_bytes[id];
      // HF's ByteLevel decoder keeps a token's own UTF-8 when it has non-byte-level characters.
      if (!impl->byte_level_decoder || !AppendByteLevelDecoded(*token, &bytes)) bytes = *token;
    }
    for (const TemplatePiece& piece : impl->post.single) {
      for (int32_t id : piece.ids) {
        if (impl->Piece(id, false) == nullptr) {
          return FieldError("post_processor", StrCat("template id ", id, " is not a token"));
        }
      }
    }
    return Tokenizer(std::move(impl));
  } catch (const Json::exception& e) {
    // Type checks above should make this unreachable; keep malformed files from aborting.
    return absl::InvalidArgumentError(StrCat("tokenizer.json: ", e.what()));
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  const Impl& impl = *impl_;
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = Utf8Lossy(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  std::vector<AddedVocab::Segment> raw_segments;
  std::vector<AddedVocab::Segment> segments;
  std::vector<std::string> words;
  impl.added.Split(text, /*normalized_pass=*/false, &raw_segments);
  for (const AddedVocab::Segment& raw : raw_segments) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::string_view piece = text.substr(raw.begin, raw.end - raw.begin);
    const std::string normalized =
        impl.normalizer.empty() ? std::string(piece) : impl.normalizer.Normalize(piece);
    segments.clear();
    impl.added.Split(normalized, /*normalized_pass=*/true, &segments);
    for (const AddedVocab::Segment& seg : segments) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      words.clear();
      impl.pre_tokenizer.Split(std::string_view(normalized).substr(seg.begin, seg.end - seg.begin),
                               &words);
      for (const std::string& word : words) impl.model.Tokenize(word, &ids);
    }
  }
  if (!add_special_tokens || !impl.post.has_template) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const TemplatePiece& piece : impl.post.single) {
    const std::vector<int32_t>& src = piece.is_sequence ? ids : piece.ids;
    out.insert(out.end(), src.begin(), src.end());
  }
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    const std::string* piece = impl_->Piece(id, skip_special_tokens);
    if (piece == nullptr) continue;
    if (!impl_->byte_level_decoder && !first) out.push_back(' ');
    out.append(*piece);
    first = false;
  }
  return out;
}

std::string Tokenizer::DecodeLossy(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return Utf8Lossy(Decode(ids, skip_special_tokens));
}

std::optional<std::string_view> Tokenizer::IdToToken(int32_t id) const {
  if (const AddedToken* t = impl_->added.FindById(id); t != nullptr) return t->content;
  return impl_->model.IdToToken(id);
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (std::optional<int32_t> id = impl_->added.FindByContent(token)) return id;
  return impl_->model.TokenToId(token);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && (impl_->flags[id] & kSpecial);
}

bool Tokenizer::IsAddedToken(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && (impl_->flags[id] & kAdded);
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : impl_(tokenizer.impl_), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::Push(int32_t id) {
  const std::string* piece = impl_->Piece(id, skip_special_);
  if (piece == nullptr) return {};
  if (!impl_->byte_level_decoder && !first_) pending_.push_back(' ');
  first_ = false;
  pending_.append(*piece);
  const size_t complete = Utf8CompletePrefixLen(pending_);
  if (complete == 0) return {};
  std::string out = Utf8Lossy(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out = Utf8Lossy(pending_);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace engram
