#include "server/model/config.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "nlohmann/json.hpp"
#include "server/model/config_reader.h"
#include "server/model/product_key_config.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

using nlohmann::json;

// 2^40 rows per head (a 2^40 x 64-byte head is 64 TiB) keeps the prime walk's arithmetic far from
// int64 overflow.
constexpr int64_t kMaxEngramVocab = int64_t{1} << 40;

// The shortest decimal that reads back as the same float, so 1e-5f is written "1e-05" and not
// "9.999999747378752e-06" (which Hugging Face tooling would show verbatim).
double ShortestDouble(float f) {
  for (int precision = 1; precision < 10; ++precision) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*g", precision, static_cast<double>(f));
    const double d = std::strtod(buf, nullptr);
    if (static_cast<float>(d) == f) return d;
  }
  return f;
}

// Whether the top level set hc_mult, for the check against the copy under "engram".
struct BackboneHc {
  bool hc_set = false;
  int hc_mult = 1;
};

absl::StatusOr<int> LayerKey(const std::string& key, const std::string& source,
                             std::string_view field) {
  int layer = 0;
  if (!absl::SimpleAtoi(key, &layer))
    return absl::InvalidArgumentError(
        StrCat(source, ": key 'engram.", field, "' has non-integer layer key '", key, "'"));
  return layer;
}

absl::Status ParseEngram(const json& e, const BackboneHc& m, const ModelConfig& mc,
                         const std::string& source, EngramConfig* c, int* hc_mult) {
  Reader r(e, source, "engram.");
  std::vector<int64_t> ids;
  RETURN_IF_ERROR(r.IntList("layer_ids", &ids));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= mc.num_hidden_layers)
      return r.Invalid("layer_ids", StrCat("holds ", ids[i], ", allowed range [0, ",
                                           mc.num_hidden_layers - 1, "]"));
    if (i > 0 && ids[i] <= ids[i - 1]) return r.Invalid("layer_ids", "must be strictly ascending");
    c->layer_ids.push_back(static_cast<int>(ids[i]));
  }
  RETURN_IF_ERROR(r.Int("max_ngram_size", &c->max_ngram_size, 2, 16));
  RETURN_IF_ERROR(r.Int("n_head_per_ngram", &c->n_head_per_ngram, 1, 1024));
  RETURN_IF_ERROR(r.Int("n_embed_per_ngram", &c->n_embed_per_ngram, 1, 1 << 20));
  if (c->n_embed_per_ngram % c->n_head_per_ngram != 0)
    return r.Invalid("n_embed_per_ngram", StrCat("is ", c->n_embed_per_ngram,
                                                 ", must be a multiple of n_head_per_ngram (",
                                                 c->n_head_per_ngram, ")"));
  RETURN_IF_ERROR(r.IntList("engram_vocab_size", &c->engram_vocab_size));
  if (static_cast<int>(c->engram_vocab_size.size()) != c->max_ngram_size - 1)
    return r.Invalid("engram_vocab_size",
                     StrCat("has ", c->engram_vocab_size.size(),
                            " entries, needs max_ngram_size - 1 = ", c->max_ngram_size - 1));
  for (int64_t v : c->engram_vocab_size)
    if (v < 2 || v > kMaxEngramVocab)
      return r.Invalid("engram_vocab_size",
                       StrCat("holds ", v, ", allowed range [2, ", kMaxEngramVocab, "]"));
  RETURN_IF_ERROR(r.Int("kernel_size", &c->kernel_size, 1, 64));
  // Model directories written before hc_mult moved to the backbone keep it here.
  if (r.Find("hc_mult") != nullptr) {
    int hc = 1;
    RETURN_IF_ERROR(r.Int("hc_mult", &hc, 1, 64));
    if (m.hc_set && hc != m.hc_mult)
      return r.Invalid("hc_mult", StrCat("is ", hc, ", but the top-level 'hc_mult' is ", m.hc_mult,
                                         "; they must agree (it belongs to the backbone)"));
    *hc_mult = hc;
  }
  RETURN_IF_ERROR(r.Int("pad_id", &c->pad_id, 0, mc.vocab_size - 1));
  RETURN_IF_ERROR(r.Int("seed", &c->seed, INT64_MIN, INT64_MAX, /*required=*/false));
  const json* td = r.Find("table_dtype");
  if (td == nullptr) return r.Missing("table_dtype");
  auto dtype = td->is_string() ? DTypeFromConfig(td->get<std::string>()) : std::nullopt;
  if (!dtype)
    return r.Invalid("table_dtype", "must be one of float32, bfloat16, float16, float8_e4m3");
  c->table_dtype = *dtype;
  if (c->table_dtype == DType::kF8E4M3 && c->row_width() % kFp8BlockSize != 0)
    return r.Invalid(
        "table_dtype",
        StrCat("float8_e4m3 needs a row width (n_embed_per_ngram / n_head_per_ngram = ",
               c->row_width(), ") that is a multiple of ", kFp8BlockSize));

  const json* mult = r.Find("multipliers");
  const json* heads = r.Find("head_vocab_sizes");
  const json* files = r.Find("table_files");
  if (mult == nullptr || !mult->is_object()) return r.Missing("multipliers");
  if (heads == nullptr || !heads->is_object()) return r.Missing("head_vocab_sizes");
  if (files == nullptr || !files->is_object()) return r.Missing("table_files");
  for (auto it = mult->begin(); it != mult->end(); ++it) {
    ASSIGN_OR_RETURN(int layer, LayerKey(it.key(), source, "multipliers"));
    std::vector<int64_t> v;
    Reader lr(*mult, source, "engram.multipliers.");
    RETURN_IF_ERROR(lr.IntList(it.key(), &v));
    c->multipliers[layer] = std::move(v);
  }
  for (auto it = heads->begin(); it != heads->end(); ++it) {
    ASSIGN_OR_RETURN(int layer, LayerKey(it.key(), source, "head_vocab_sizes"));
    const std::string key = StrCat("engram.head_vocab_sizes.", it.key());
    if (!it->is_array())
      return absl::InvalidArgumentError(
          StrCat(source, ": key '", key, "' must be a list of lists"));
    auto& dst = c->head_vocab_sizes[layer];
    for (const auto& per_n : *it) {
      if (!per_n.is_array())
        return absl::InvalidArgumentError(
            StrCat(source, ": key '", key, "' must be a list of lists"));
      std::vector<int64_t> primes;
      for (const auto& p : per_n) {
        if (!p.is_number_integer() || p.get<int64_t>() < 2)
          return absl::InvalidArgumentError(
              StrCat(source, ": key '", key, "' holds a value that is not an integer >= 2"));
        primes.push_back(p.get<int64_t>());
      }
      dst.push_back(std::move(primes));
    }
  }
  for (auto it = files->begin(); it != files->end(); ++it) {
    ASSIGN_OR_RETURN(int layer, LayerKey(it.key(), source, "table_files"));
    if (!it->is_string() || it->get<std::string>().empty() ||
        it->get<std::string>().find('/') != std::string::npos)
      return absl::InvalidArgumentError(StrCat(source, ": key 'engram.table_files.", it.key(),
                                               "' must be a file name inside the model directory"));
    c->table_files[layer] = it->get<std::string>();
  }
  for (int layer : c->layer_ids) {
    const std::string l = std::to_string(layer);
    auto mi = c->multipliers.find(layer);
    if (mi == c->multipliers.end()) return r.Missing(StrCat("multipliers.", l));
    if (static_cast<int>(mi->second.size()) != c->max_ngram_size)
      return r.Invalid(
          StrCat("multipliers.", l),
          StrCat("has ", mi->second.size(), " values, needs max_ngram_size = ", c->max_ngram_size));
    for (int64_t x : mi->second)
      if ((x & 1) == 0)
        return r.Invalid(StrCat("multipliers.", l),
                         StrCat("holds even value ", x, "; multipliers must be odd"));
    auto hi = c->head_vocab_sizes.find(layer);
    if (hi == c->head_vocab_sizes.end()) return r.Missing(StrCat("head_vocab_sizes.", l));
    if (static_cast<int>(hi->second.size()) != c->max_ngram_size - 1)
      return r.Invalid(StrCat("head_vocab_sizes.", l),
                       StrCat("needs max_ngram_size - 1 = ", c->max_ngram_size - 1, " lists"));
    for (const auto& per_n : hi->second)
      if (static_cast<int>(per_n.size()) != c->n_head_per_ngram)
        return r.Invalid(StrCat("head_vocab_sizes.", l),
                         StrCat("lists need n_head_per_ngram = ", c->n_head_per_ngram, " primes"));
    if (!c->table_files.count(layer)) return r.Missing(StrCat("table_files.", l));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const json& j, const std::string& source) {
  if (!j.is_object()) return absl::InvalidArgumentError(StrCat(source, ": not a JSON object"));
  ModelConfig c;
  Reader r(j, source);
  RETURN_IF_ERROR(r.Int("hidden_size", &c.hidden_size, 1, 1 << 20));
  RETURN_IF_ERROR(r.Int("intermediate_size", &c.intermediate_size, 1, 1 << 22));
  RETURN_IF_ERROR(r.Int("num_hidden_layers", &c.num_hidden_layers, 1, 4096));
  RETURN_IF_ERROR(r.Int("num_attention_heads", &c.num_attention_heads, 1, 4096));
  c.num_key_value_heads = c.num_attention_heads;
  RETURN_IF_ERROR(
      r.Int("num_key_value_heads", &c.num_key_value_heads, 1, c.num_attention_heads, false));
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return r.Invalid("num_key_value_heads",
                     StrCat("is ", c.num_key_value_heads, ", must divide num_attention_heads (",
                            c.num_attention_heads, ")"));
  if (c.hidden_size % c.num_attention_heads != 0 && r.Find("head_dim") == nullptr)
    return r.Invalid("hidden_size",
                     "must be a multiple of num_attention_heads when head_dim is absent");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  RETURN_IF_ERROR(r.Int("head_dim", &c.head_dim, 2, 4096, false));
  if (c.head_dim < 2 || c.head_dim > 4096)
    return r.Invalid("hidden_size", StrCat("/ num_attention_heads gives head_dim ", c.head_dim,
                                           ", allowed range [2, 4096] (or set head_dim)"));
  if (c.head_dim % 2 != 0) return r.Invalid("head_dim", "must be even (rotate-half RoPE)");
  RETURN_IF_ERROR(r.Float("rms_norm_eps", &c.rms_norm_eps, 0.0, 1.0));
  RETURN_IF_ERROR(r.Float("rope_theta", &c.rope_theta, 0.0, 1e12, false));
  RETURN_IF_ERROR(r.Int("vocab_size", &c.vocab_size, 1, 1 << 24));
  RETURN_IF_ERROR(r.Int("max_position_embeddings", &c.max_position_embeddings, 1, 1 << 24));
  if (const json* t = r.Find("tie_word_embeddings")) {
    if (!t->is_boolean()) return r.Invalid("tie_word_embeddings", "must be true or false");
    c.tie_word_embeddings = t->get<bool>();
  }
  RETURN_IF_ERROR(r.Int("bos_token_id", &c.bos_token_id, 0, c.vocab_size - 1, false));
  if (const json* e = r.Find("eos_token_id")) {
    std::vector<json> ids = e->is_array() ? e->get<std::vector<json>>() : std::vector<json>{*e};
    for (const auto& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= c.vocab_size)
        return r.Invalid("eos_token_id",
                         StrCat("must be token ids in [0, ", c.vocab_size - 1, "]"));
      c.eos_token_ids.push_back(id.get<int64_t>());
    }
  }
  if (const json* d = r.Find("torch_dtype")) {
    auto dt = d->is_string() ? DTypeFromConfig(d->get<std::string>()) : std::nullopt;
    if (!dt || (*dt != DType::kF32 && *dt != DType::kBF16))
      return r.Invalid("torch_dtype", "must be float32 or bfloat16");
    c.dtype = *dt;
  }
  BackboneHc hc;
  if (r.Find("hc_mult") != nullptr) {
    RETURN_IF_ERROR(r.Int("hc_mult", &c.hc_mult, 1, 64));
    hc = {true, c.hc_mult};
  }
  if (const json* e = r.Find("engram")) {
    if (!e->is_object()) return r.Invalid("engram", "must be an object");
    RETURN_IF_ERROR(ParseEngram(*e, hc, c, source, &c.engram, &c.hc_mult));
  }
  if (const json* p = r.Find("product_key_memory")) {
    if (!p->is_object()) return r.Invalid("product_key_memory", "must be an object");
    RETURN_IF_ERROR(ParseProductKeyConfig(*p, c, source, &c.product_key));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(StrCat(path, ": not valid JSON"));
  return ParseModelConfig(j, path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {"EngramLlamaForCausalLM"};
  j["model_type"] = "engram_llama";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = ShortestDouble(c.rms_norm_eps);
  j["rope_theta"] = ShortestDouble(c.rope_theta);
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty())
    j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = DTypeToConfig(c.dtype);
  j["hc_mult"] = c.hc_mult;
  if (c.engram.enabled()) {
    const EngramConfig& e = c.engram;
    nlohmann::ordered_json ej;
    ej["layer_ids"] = e.layer_ids;
    ej["max_ngram_size"] = e.max_ngram_size;
    ej["n_embed_per_ngram"] = e.n_embed_per_ngram;
    ej["n_head_per_ngram"] = e.n_head_per_ngram;
    ej["engram_vocab_size"] = e.engram_vocab_size;
    ej["kernel_size"] = e.kernel_size;
    ej["hc_mult"] = c.hc_mult;  // where readers from before the move look for it
    ej["pad_id"] = e.pad_id;
    ej["seed"] = e.seed;
    for (const auto& [l, v] : e.multipliers) ej["multipliers"][std::to_string(l)] = v;
    for (const auto& [l, v] : e.head_vocab_sizes) ej["head_vocab_sizes"][std::to_string(l)] = v;
    ej["table_dtype"] = DTypeToConfig(e.table_dtype);
    for (const auto& [l, f] : e.table_files) ej["table_files"][std::to_string(l)] = f;
    j["engram"] = ej;
  }
  if (c.product_key.enabled()) j["product_key_memory"] = ProductKeyConfigToJson(c.product_key);
  return j.dump(2) + "\n";
}

}  // namespace engram
