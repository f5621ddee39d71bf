// Opens and validates a model directory (docs/model-format.md). Everything a forward pass will
// index is checked here, once, against the config: a file that passes Open can be used without
// further bounds checks. Only headers and the small compressed-id table are read; weights and
// tables stay mmap'd.
#include "server/model/model_files.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "server/memory/hashing.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

namespace fs = std::filesystem;

std::string JoinPath(const std::string& dir, const std::string& file) {
  return (fs::path(dir) / file).string();
}

std::string DTypeNames(const std::vector<DType>& dtypes) {
  std::vector<std::string> names;
  for (DType d : dtypes) names.emplace_back(DTypeToSafetensors(d));
  return absl::StrJoin(names, " or ");
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Checks one found tensor against its expectation; errors name the file and tensor.
absl::Status CheckTensor(const SafetensorsFile& f, const TensorInfo& t, const ExpectedTensor& e,
                         std::string_view why_dtype) {
  bool dtype_ok = false;
  for (DType d : e.dtypes) dtype_ok |= d == t.dtype;
  if (!dtype_ok)
    return absl::InvalidArgumentError(StrCat(f.path(), ": tensor '", t.name, "' has dtype ",
                                             DTypeToSafetensors(t.dtype), ", expected ",
                                             DTypeNames(e.dtypes), why_dtype));
  if (t.shape != e.shape)
    return absl::InvalidArgumentError(StrCat(f.path(), ": tensor '", t.name, "' has shape ",
                                             t.ShapeString(), ", expected ", ShapeString(e.shape)));
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(StrCat(path, ": not valid JSON"));
  return j;
}

}  // namespace

std::string EngramPrefix(int layer) { return StrCat("model.layers.", layer, ".engram."); }

std::string TableTensorName(int layer) {
  return StrCat(EngramPrefix(layer), "multi_head_embedding.embedding.weight");
}

std::string TableScaleTensorName(int layer) { return StrCat(TableTensorName(layer), "_scale"); }

std::string ProductKeyPrefix(int layer) { return StrCat("model.layers.", layer, ".memory."); }

std::string ProductKeyValuesName(const std::string& key) {
  return key == ProductKeyConfig::kSharedKey
             ? "model.memory.values.weight"
             : StrCat("model.layers.", key, ".memory.values.weight");
}

std::string ProductKeyValuesScaleName(const std::string& key) {
  return StrCat(ProductKeyValuesName(key), "_scale");
}

std::vector<ExpectedTensor> ExpectedBackboneTensors(const ModelConfig& c) {
  const int64_t d = c.hidden_size, v = c.vocab_size, inter = c.intermediate_size;
  const int64_t q = static_cast<int64_t>(c.num_attention_heads) * c.head_dim;
  const int64_t kv = static_cast<int64_t>(c.num_key_value_heads) * c.head_dim;
  const std::vector<DType> dt = {c.dtype};
  std::vector<ExpectedTensor> out;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    out.push_back({std::move(name), std::move(shape), dt});
  };
  add("model.embed_tokens.weight", {v, d});
  const EngramConfig& e = c.engram;
  const ProductKeyConfig& pk = c.product_key;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = StrCat("model.layers.", i, ".");
    if (e.SlotOf(i) >= 0) {
      const std::string g = EngramPrefix(i);
      const int64_t k = e.embed_dim();
      add(g + "value_proj.weight", {d, k});
      add(g + "value_proj.bias", {d});
      for (int m = 0; m < c.hc_mult; ++m) {
        add(StrCat(g, "key_projs.", m, ".weight"), {d, k});
        add(StrCat(g, "key_projs.", m, ".bias"), {d});
        add(StrCat(g, "norm1.", m, ".weight"), {d});
        add(StrCat(g, "norm2.", m, ".weight"), {d});
      }
      add(g + "short_conv.conv.weight", {c.hc_mult * d, 1, e.kernel_size});
      for (int m = 0; m < c.hc_mult; ++m) add(StrCat(g, "short_conv.norms.", m, ".weight"), {d});
    }
    add(p + "input_layernorm.weight", {d});
    add(p + "self_attn.q_proj.weight", {q, d});
    add(p + "self_attn.k_proj.weight", {kv, d});
    add(p + "self_attn.v_proj.weight", {kv, d});
    add(p + "self_attn.o_proj.weight", {d, q});
    add(p + "post_attention_layernorm.weight", {d});
    if (pk.SlotOf(i) >= 0) {  // the memory replaces the MLP (DESIGN §2.4)
      const std::string g = ProductKeyPrefix(i);
      const int64_t hk = static_cast<int64_t>(pk.heads) * pk.k_dim, vd = pk.v_dim;
      add(g + "keys", {2 * pk.heads * pk.n_keys, pk.k_dim / 2});
      add(g + "query_proj.weight", {hk, d});
      if (pk.query_bias) add(g + "query_proj.bias", {hk});
      if (pk.swilu_projection) {
        add(g + "swilu_projection.weight", {vd, d});
        add(g + "swilu_projection.bias", {vd});
      }
      // Without swilu and with v_dim = D the published module may have no value_proj: then
      // the tensor's presence decides (ProductKeyWeights).
      const bool optional = !pk.swilu_projection && vd == d;
      out.push_back({g + "value_proj.weight", {d, vd}, dt, optional});
      out.push_back({g + "value_proj.bias", {d}, dt, optional});
      if (pk.gated) {
        add(g + "gating.weight", {1, d});
        add(g + "gating.bias", {1});
      }
      continue;
    }
    add(p + "mlp.gate_proj.weight", {inter, d});
    add(p + "mlp.up_proj.weight", {inter, d});
    add(p + "mlp.down_proj.weight", {d, inter});
  }
  add("model.norm.weight", {d});
  if (!c.tie_word_embeddings) add("lm_head.weight", {v, d});
  return out;
}

std::vector<ExpectedTensor> ExpectedTableTensors(const ModelConfig& c, int layer) {
  const EngramConfig& e = c.engram;
  int64_t rows = 0;
  auto it = e.head_vocab_sizes.find(layer);
  if (it != e.head_vocab_sizes.end())
    for (const auto& per_n : it->second)
      for (int64_t p : per_n) rows += p;
  std::vector<ExpectedTensor> out;
  out.push_back({TableTensorName(layer), {rows, e.row_width()}, {e.table_dtype}});
  if (e.table_dtype == DType::kF8E4M3)
    out.push_back(
        {TableScaleTensorName(layer), {rows, e.row_width() / kFp8BlockSize}, {DType::kU8}});
  return out;
}

std::vector<ExpectedTensor> ExpectedProductKeyTableTensors(const ModelConfig& c,
                                                           const std::string& key) {
  const ProductKeyConfig& pk = c.product_key;
  std::vector<ExpectedTensor> out;
  out.push_back({ProductKeyValuesName(key), {pk.rows(), pk.v_dim}, {pk.table_dtype}});
  if (pk.table_dtype == DType::kF8E4M3)
    out.push_back(
        {ProductKeyValuesScaleName(key), {pk.rows(), pk.v_dim / kFp8BlockSize}, {DType::kU8}});
  return out;
}

std::vector<std::string> ForbiddenBackboneTensors(const ModelConfig& c) {
  std::vector<std::string> out;
  for (int l : c.product_key.layer_ids)
    for (const char* m : {"gate_proj", "up_proj", "down_proj"})
      out.push_back(StrCat("model.layers.", l, ".mlp.", m, ".weight"));
  return out;
}

absl::StatusOr<std::unique_ptr<ModelFiles>> ModelFiles::Open(const std::string& dir) {
  auto out = std::unique_ptr<ModelFiles>(new ModelFiles());
  out->dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return absl::NotFoundError(StrCat("model directory ", dir, ": not a directory"));
  const std::string config_path = JoinPath(dir, "config.json");
  ASSIGN_OR_RETURN(out->config_, LoadModelConfig(config_path));
  const ModelConfig& c = out->config_;
  RETURN_IF_ERROR(ValidateEngramAddressing(c.engram, config_path));

  out->tokenizer_path_ = JoinPath(dir, "tokenizer.json");
  if (!fs::is_regular_file(out->tokenizer_path_, ec))
    return absl::NotFoundError(StrCat("model directory ", dir, ": missing tokenizer.json"));

  // Backbone: one file, or HF shards named by an index. `home` records where each expected
  // tensor should be, for the error message when it is not.
  std::map<std::string, std::string> home;
  const std::string single = JoinPath(dir, "model.safetensors");
  const std::string index_path = JoinPath(dir, "model.safetensors.index.json");
  if (fs::exists(single, ec)) {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single));
    out->shards_.push_back(std::move(f));
  } else if (fs::exists(index_path, ec)) {
    ASSIGN_OR_RETURN(nlohmann::json index, ReadJsonFile(index_path));
    auto wm = index.is_object() ? index.find("weight_map") : index.end();
    if (wm == index.end() || !wm->is_object())
      return absl::InvalidArgumentError(StrCat(index_path, ": missing object 'weight_map'"));
    std::map<std::string, size_t> shard_of_file;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string() || it->get<std::string>().empty() ||
          it->get<std::string>().find('/') != std::string::npos)
        return absl::InvalidArgumentError(StrCat(index_path, ": key 'weight_map.", it.key(),
                                                 "' must name a file in the directory"));
      const std::string file = it->get<std::string>();
      home[it.key()] = file;
      if (shard_of_file.count(file)) continue;
      ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(JoinPath(dir, file)));
      shard_of_file[file] = out->shards_.size();
      out->shards_.push_back(std::move(f));
    }
    for (const auto& [name, file] : home) {
      if (out->shards_[shard_of_file[file]]->Find(name) == nullptr)
        return absl::InvalidArgumentError(StrCat(index_path, ": weight_map puts tensor '", name,
                                                 "' in ", file, ", which lacks it"));
    }
  } else {
    return absl::NotFoundError(StrCat("model directory ", dir,
                                      ": missing model.safetensors (and no "
                                      "model.safetensors.index.json)"));
  }
  for (const auto& shard : out->shards_) {
    for (const auto& t : shard->tensors()) {
      auto [it, inserted] = out->index_.try_emplace(t.name, shard.get(), &t);
      if (!inserted)
        return absl::InvalidArgumentError(StrCat(shard->path(), ": tensor '", t.name,
                                                 "' also appears in ", it->second.first->path()));
    }
  }
  const std::string why = StrCat(" (config torch_dtype ", DTypeToConfig(c.dtype), ")");
  for (const auto& e : ExpectedBackboneTensors(c)) {
    auto it = out->index_.find(e.name);
    if (it == out->index_.end() && e.optional) continue;
    if (it == out->index_.end()) {
      auto h = home.find(e.name);
      return absl::NotFoundError(StrCat("model directory ", dir, ": missing tensor '", e.name,
                                        "' (expected in ",
                                        h == home.end() ? "model.safetensors" : h->second, ")"));
    }
    RETURN_IF_ERROR(CheckTensor(*it->second.first, *it->second.second, e, why));
  }
  // An optional pair (value_proj's weight and bias) is present or absent as a whole.
  for (int l : c.product_key.layer_ids) {
    const std::string w = ProductKeyPrefix(l) + "value_proj.weight";
    const std::string b = ProductKeyPrefix(l) + "value_proj.bias";
    if (out->index_.count(w) != out->index_.count(b))
      return absl::NotFoundError(StrCat("model directory ", dir, ": missing tensor '",
                                        out->index_.count(w) ? b : w, "' (the other half of ",
                                        ProductKeyPrefix(l), "value_proj is present)"));
  }

  for (const std::string& name : ForbiddenBackboneTensors(c)) {
    auto it = out->index_.find(name);
    if (it != out->index_.end())
      return absl::InvalidArgumentError(
          StrCat(it->second.first->path(), ": tensor '", name,
                 "' belongs to an MLP, but this block's MLP is replaced by product-key memory "
                 "(config product_key_memory.layer_ids); a memory block has no mlp.* tensors"));
  }
  const ProductKeyConfig& pk = c.product_key;
  for (const auto& [key, file] : pk.table_files) {
    const std::string path = JoinPath(dir, file);
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(path));
    for (const auto& e : ExpectedProductKeyTableTensors(c, key)) {
      const TensorInfo* t = f->Find(e.name);
      if (t == nullptr) return absl::NotFoundError(StrCat(path, ": missing tensor '", e.name, "'"));
      RETURN_IF_ERROR(CheckTensor(
          *f, *t, e,
          StrCat(" (config product_key_memory.table_dtype ", DTypeToConfig(pk.table_dtype), ")")));
    }
    f->file().AdviseRandom();
    out->pkm_tables_[key] = std::move(f);
  }

  for (int layer : c.engram.layer_ids) {
    const std::string path = JoinPath(dir, c.engram.table_files.at(layer));
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(path));
    for (const auto& e : ExpectedTableTensors(c, layer)) {
      const TensorInfo* t = f->Find(e.name);
      if (t == nullptr) return absl::NotFoundError(StrCat(path, ": missing tensor '", e.name, "'"));
      RETURN_IF_ERROR(CheckTensor(
          *f, *t, e,
          StrCat(" (config engram.table_dtype ", DTypeToConfig(c.engram.table_dtype), ")")));
    }
    f->file().AdviseRandom();
    out->tables_.push_back(std::move(f));
  }

  const std::string compress_path = JoinPath(dir, kCompressFile);
  if (fs::exists(compress_path, ec)) {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(compress_path));
    const TensorInfo* t = f->Find(kCompressTensor);
    if (t == nullptr)
      return absl::NotFoundError(StrCat(compress_path, ": missing tensor '", kCompressTensor, "'"));
    ExpectedTensor e{kCompressTensor, {c.vocab_size}, {DType::kI64, DType::kI32}};
    RETURN_IF_ERROR(CheckTensor(*f, *t, e, ""));
    std::vector<int64_t> ids(static_cast<size_t>(c.vocab_size));
    const std::byte* p = f->data(*t);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (t->dtype == DType::kI64) {
        std::memcpy(&ids[i], p + i * 8, 8);
      } else {
        int32_t v;
        std::memcpy(&v, p + i * 4, 4);
        ids[i] = v;
      }
      if (ids[i] < 0)
        return absl::InvalidArgumentError(StrCat(compress_path, ": tensor '", kCompressTensor,
                                                 "' holds negative id ", ids[i], " at index ", i));
    }
    out->compress_ = std::move(ids);
  }
  return out;
}

std::optional<TensorView> ModelFiles::Backbone(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  const auto& [file, info] = it->second;
  return TensorView{file->data(*info), info->dtype, info->shape, info, file};
}

TensorView ModelFiles::Table(int slot) const {
  const SafetensorsFile& f = *tables_[static_cast<size_t>(slot)];
  const TensorInfo* t =
      f.Find(TableTensorName(config_.engram.layer_ids[static_cast<size_t>(slot)]));
  return TensorView{f.data(*t), t->dtype, t->shape, t, &f};
}

std::optional<TensorView> ModelFiles::TableScale(int slot) const {
  if (config_.engram.table_dtype != DType::kF8E4M3) return std::nullopt;
  const SafetensorsFile& f = *tables_[static_cast<size_t>(slot)];
  const TensorInfo* t =
      f.Find(TableScaleTensorName(config_.engram.layer_ids[static_cast<size_t>(slot)]));
  if (t == nullptr) return std::nullopt;
  return TensorView{f.data(*t), t->dtype, t->shape, t, &f};
}

TensorView ModelFiles::ProductKeyValues(const std::string& key) const {
  const SafetensorsFile& f = *pkm_tables_.at(key);
  const TensorInfo* t = f.Find(ProductKeyValuesName(key));
  return TensorView{f.data(*t), t->dtype, t->shape, t, &f};
}

std::optional<TensorView> ModelFiles::ProductKeyValuesScale(const std::string& key) const {
  if (config_.product_key.table_dtype != DType::kF8E4M3) return std::nullopt;
  const SafetensorsFile& f = *pkm_tables_.at(key);
  const TensorInfo* t = f.Find(ProductKeyValuesScaleName(key));
  if (t == nullptr) return std::nullopt;
  return TensorView{f.data(*t), t->dtype, t->shape, t, &f};
}

}  // namespace engram
