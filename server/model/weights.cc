#include "server/model/weights.h"

#include <cstring>

#include "engram/kernels/row_math.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

class Loader {
 public:
  Loader(const ModelFiles& f, Backend* backend, Weights* w) : f_(f), backend_(backend), w_(w) {}

  absl::StatusOr<Matrix> Mat(const std::string& name) {
    auto t = f_.Backbone(name);
    if (!t) return Missing(name);
    return backend_->Resident(
        Matrix{t->data, t->dtype, t->shape[0], t->shape.size() > 1 ? t->shape[1] : 1});
  }
  // One vector, or several of equal length packed one after another.
  absl::StatusOr<const float*> Vec(const std::vector<std::string>& names) {
    std::vector<float>& packed = w_->host_vectors.emplace_back();
    for (const std::string& name : names) {
      ASSIGN_OR_RETURN(std::vector<float> v, Widen(name));
      packed.insert(packed.end(), v.begin(), v.end());
    }
    return backend_->Resident(packed.data(), static_cast<int64_t>(packed.size()));
  }
  absl::StatusOr<const float*> Vec(const std::string& name) {
    return Vec(std::vector<std::string>{name});
  }

 private:
  absl::StatusOr<std::vector<float>> Widen(const std::string& name) {
    auto t = f_.Backbone(name);
    if (!t) return Missing(name);
    int64_t n = 1;
    for (int64_t d : t->shape) n *= d;
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (t->dtype == DType::kBF16) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        out[i] = Bf16ToFloat(h);
      } else {
        std::memcpy(&out[i], t->data + 4 * i, 4);
      }
    }
    return out;
  }

  absl::Status Missing(const std::string& name) {
    return absl::NotFoundError(StrCat(f_.dir(), ": missing tensor '", name, "'"));
  }
  const ModelFiles& f_;
  Backend* backend_;
  Weights* w_;
};

}  // namespace

absl::StatusOr<Weights> LoadWeights(const ModelFiles& files, Backend* backend) {
  const ModelConfig& c = files.config();
  Weights w;
  Loader ld(files, backend, &w);
  ASSIGN_OR_RETURN(w.embed, ld.Mat("model.embed_tokens.weight"));
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
  } else {
    ASSIGN_OR_RETURN(w.lm_head, ld.Mat("lm_head.weight"));
  }
  ASSIGN_OR_RETURN(w.final_norm, ld.Vec("model.norm.weight"));
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = StrCat("model.layers.", i, ".");
    LayerWeights& l = w.layers.emplace_back();
    ASSIGN_OR_RETURN(l.q, ld.Mat(p + "self_attn.q_proj.weight"));
    ASSIGN_OR_RETURN(l.k, ld.Mat(p + "self_attn.k_proj.weight"));
    ASSIGN_OR_RETURN(l.v, ld.Mat(p + "self_attn.v_proj.weight"));
    ASSIGN_OR_RETURN(l.o, ld.Mat(p + "self_attn.o_proj.weight"));
    l.engram_slot = c.engram.SlotOf(i);
    l.product_key_slot = c.product_key.SlotOf(i);
    if (l.product_key_slot < 0) {
      ASSIGN_OR_RETURN(l.gate, ld.Mat(p + "mlp.gate_proj.weight"));
      ASSIGN_OR_RETURN(l.up, ld.Mat(p + "mlp.up_proj.weight"));
      ASSIGN_OR_RETURN(l.down, ld.Mat(p + "mlp.down_proj.weight"));
    }
    ASSIGN_OR_RETURN(l.input_norm, ld.Vec(p + "input_layernorm.weight"));
    ASSIGN_OR_RETURN(l.post_norm, ld.Vec(p + "post_attention_layernorm.weight"));
  }
  const ProductKeyConfig& pk = c.product_key;
  for (int layer : pk.layer_ids) {
    const std::string p = ProductKeyPrefix(layer);
    ProductKeyWeights& m = w.product_key.emplace_back();
    ASSIGN_OR_RETURN(m.keys, ld.Vec(p + "keys"));
    ASSIGN_OR_RETURN(m.query, ld.Mat(p + "query_proj.weight"));
    if (pk.query_bias) {
      ASSIGN_OR_RETURN(m.query_bias, ld.Vec(p + "query_proj.bias"));
    }
    if (pk.swilu_projection) {
      ASSIGN_OR_RETURN(m.swilu, ld.Mat(p + "swilu_projection.weight"));
      ASSIGN_OR_RETURN(m.swilu_bias, ld.Vec(p + "swilu_projection.bias"));
    }
    if (files.Backbone(p + "value_proj.weight").has_value()) {  // ModelFiles::Open: both or none
      ASSIGN_OR_RETURN(m.value_proj, ld.Mat(p + "value_proj.weight"));
      ASSIGN_OR_RETURN(m.value_bias, ld.Vec(p + "value_proj.bias"));
    }
    if (pk.gated) {
      ASSIGN_OR_RETURN(m.gating, ld.Mat(p + "gating.weight"));
      ASSIGN_OR_RETURN(m.gating_bias, ld.Vec(p + "gating.bias"));
    }
  }
  for (int layer : c.engram.layer_ids) {
    const std::string p = EngramPrefix(layer);
    EngramWeights& e = w.engram.emplace_back();
    ASSIGN_OR_RETURN(e.value_proj, ld.Mat(p + "value_proj.weight"));
    ASSIGN_OR_RETURN(e.value_bias, ld.Vec(p + "value_proj.bias"));
    std::vector<std::string> key_norm, query_norm, conv_norm;
    for (int m = 0; m < c.hc_mult; ++m) {
      const std::string ms = std::to_string(m);
      ASSIGN_OR_RETURN(e.key_proj.emplace_back(), ld.Mat(p + "key_projs." + ms + ".weight"));
      ASSIGN_OR_RETURN(e.key_bias.emplace_back(), ld.Vec(p + "key_projs." + ms + ".bias"));
      key_norm.push_back(p + "norm1." + ms + ".weight");
      query_norm.push_back(p + "norm2." + ms + ".weight");
      conv_norm.push_back(p + "short_conv.norms." + ms + ".weight");
    }
    ASSIGN_OR_RETURN(e.key_norm, ld.Vec(key_norm));
    ASSIGN_OR_RETURN(e.query_norm, ld.Vec(query_norm));
    ASSIGN_OR_RETURN(e.conv_norm, ld.Vec(conv_norm));
    ASSIGN_OR_RETURN(e.conv_weight, ld.Vec(p + "short_conv.conv.weight"));
  }
  return w;
}

}  // namespace engram
