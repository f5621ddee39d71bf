// config.json: the Llama hyper-parameters plus the "engram" object of docs/model-format.md.
// Loading validates every key a forward pass relies on, so a bad config fails at start-up with
// the file and key named, never later inside a kernel.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/dtype.h"
#include "nlohmann/json_fwd.hpp"
#include "server/memory/engram_config.h"

namespace engram {

// Product-key memory (Memory+, DESIGN §2.4): the layers whose MLP a memory replaces.
struct ProductKeyConfig {
  std::vector<int> layer_ids;
  int64_t n_keys = 0;  // n: sub-keys per half, n^2 value rows
  int heads = 0;       // H >= 2
  int knn = 0;         // k <= n
  int k_dim = 0;       // even
  int v_dim = 0;       // stored row width
  bool share_values = true;
  bool swilu_projection = true;
  bool query_bias = true;
  bool gated = false;
  DType table_dtype = DType::kF32;
  // share_values: the one file under kSharedKey; else one file per layer.
  std::map<std::string, std::string> table_files;

  static constexpr char kSharedKey[] = "shared";
  bool enabled() const { return !layer_ids.empty(); }
  int64_t rows() const { return n_keys * n_keys; }
  int SlotOf(int layer) const;
  // The table_files key of the values table that `layer` reads.
  std::string TableKey(int layer) const {
    return share_values ? kSharedKey : std::to_string(layer);
  }
};

struct ModelConfig {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  DType dtype = DType::kF32;  // torch_dtype: every floating backbone tensor
  // M: residual branches (hyper-connections). Read from the top-level "hc_mult", or from
  // "engram.hc_mult" where directories written before it moved keep it; written to both.
  int hc_mult = 1;
  EngramConfig engram;
  ProductKeyConfig product_key;
};

// Parses and validates; `source` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j, const std::string& source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);
// The inverse of ParseModelConfig, keys in a stable order.
std::string ModelConfigToJson(const ModelConfig& c);

}  // namespace engram
