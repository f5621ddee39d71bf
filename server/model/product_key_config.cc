#include "server/model/product_key_config.h"

#include <algorithm>

#include "server/model/config_reader.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

// n^2 value rows must fit int64 with room to spare, and sub-key ids fit int32.
constexpr int64_t kMaxKeys = int64_t{1} << 30;

absl::Status Bool(const Reader& r, std::string_view key, bool* out) {
  const nlohmann::json* v = r.Find(key);
  if (v == nullptr) return absl::OkStatus();  // the published module's default stays
  if (!v->is_boolean()) return r.Invalid(key, "must be true or false");
  *out = v->get<bool>();
  return absl::OkStatus();
}

}  // namespace

int ProductKeyConfig::SlotOf(int layer) const {
  auto it = std::find(layer_ids.begin(), layer_ids.end(), layer);
  return it == layer_ids.end() ? -1 : static_cast<int>(it - layer_ids.begin());
}

absl::Status ParseProductKeyConfig(const nlohmann::json& j, const ModelConfig& m,
                                   const std::string& source, ProductKeyConfig* c) {
  Reader r(j, source, "product_key_memory.");
  std::vector<int64_t> ids;
  RETURN_IF_ERROR(r.IntList("layer_ids", &ids));
  if (ids.empty()) return r.Invalid("layer_ids", "must name at least one layer");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= m.num_hidden_layers)
      return r.Invalid("layer_ids", StrCat("holds ", ids[i], ", allowed range [0, ",
                                           m.num_hidden_layers - 1, "]"));
    if (i > 0 && ids[i] <= ids[i - 1]) return r.Invalid("layer_ids", "must be strictly ascending");
    if (m.engram.SlotOf(static_cast<int>(ids[i])) >= 0)
      return r.Invalid("layer_ids", StrCat("holds ", ids[i],
                                           ", which has an Engram layer; a block carries one "
                                           "memory layer"));
    c->layer_ids.push_back(static_cast<int>(ids[i]));
  }
  if (m.hc_mult != 1)
    return r.Invalid("layer_ids",
                     StrCat("needs hc_mult 1 (product-key memory is defined for a plain residual "
                            "stream), but hc_mult is ",
                            m.hc_mult));
  RETURN_IF_ERROR(r.Int("n_keys", &c->n_keys, 1, kMaxKeys));
  RETURN_IF_ERROR(r.Int("heads", &c->heads, 2, 1024));
  RETURN_IF_ERROR(r.Int("knn", &c->knn, 1, std::min<int64_t>(c->n_keys, 4096)));
  RETURN_IF_ERROR(r.Int("k_dim", &c->k_dim, 2, 1 << 16));
  if (c->k_dim % 2 != 0)
    return r.Invalid("k_dim", StrCat("is ", c->k_dim, ", must be even (two halves of k_dim/2)"));
  RETURN_IF_ERROR(r.Int("v_dim", &c->v_dim, 1, 1 << 20));
  RETURN_IF_ERROR(Bool(r, "share_values", &c->share_values));
  RETURN_IF_ERROR(Bool(r, "swilu_projection", &c->swilu_projection));
  RETURN_IF_ERROR(Bool(r, "query_bias", &c->query_bias));
  RETURN_IF_ERROR(Bool(r, "gated", &c->gated));
  const nlohmann::json* td = r.Find("table_dtype");
  if (td == nullptr) return r.Missing("table_dtype");
  auto dtype = td->is_string() ? DTypeFromConfig(td->get<std::string>()) : std::nullopt;
  if (!dtype)
    return r.Invalid("table_dtype", "must be one of float32, bfloat16, float16, float8_e4m3");
  c->table_dtype = *dtype;
  if (c->table_dtype == DType::kF8E4M3 && c->v_dim % kFp8BlockSize != 0)
    return r.Invalid("table_dtype", StrCat("float8_e4m3 needs a v_dim that is a multiple of ",
                                           kFp8BlockSize, ", v_dim is ", c->v_dim));
  const nlohmann::json* files = r.Find("table_files");
  if (files == nullptr || !files->is_object()) return r.Missing("table_files");
  for (auto it = files->begin(); it != files->end(); ++it) {
    if (!it->is_string() || it->get<std::string>().empty() ||
        it->get<std::string>().find('/') != std::string::npos)
      return absl::InvalidArgumentError(StrCat(source, ": key 'product_key_memory.table_files.",
                                               it.key(),
                                               "' must be a file name inside the model directory"));
    c->table_files[it.key()] = it->get<std::string>();
  }
  if (c->share_values) {
    if (c->table_files.size() != 1 || c->table_files.count(ProductKeyConfig::kSharedKey) == 0)
      return r.Invalid("table_files",
                       "must be {\"shared\": file} when share_values is true (one values table)");
  } else {
    for (int l : c->layer_ids)
      if (c->table_files.count(std::to_string(l)) == 0) return r.Missing(StrCat("table_files.", l));
    if (c->table_files.size() != c->layer_ids.size())
      return r.Invalid("table_files", "must have one file per layer of layer_ids and no other key");
  }
  return absl::OkStatus();
}

nlohmann::ordered_json ProductKeyConfigToJson(const ProductKeyConfig& c) {
  nlohmann::ordered_json j;
  j["layer_ids"] = c.layer_ids;
  j["n_keys"] = c.n_keys;
  j["heads"] = c.heads;
  j["knn"] = c.knn;
  j["k_dim"] = c.k_dim;
  j["v_dim"] = c.v_dim;
  j["share_values"] = c.share_values;
  j["swilu_projection"] = c.swilu_projection;
  j["query_bias"] = c.query_bias;
  j["gated"] = c.gated;
  j["table_dtype"] = DTypeToConfig(c.table_dtype);
  for (const auto& [k, f] : c.table_files) j["table_files"][k] = f;
  return j;
}

}  // namespace engram
