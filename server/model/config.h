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

namespace engram {

struct EngramConfig {
  std::vector<int> layer_ids;
  int max_ngram_size = 3;                  // N
  int n_embed_per_ngram = 0;               // E
  int n_head_per_ngram = 0;                // H
  std::vector<int64_t> engram_vocab_size;  // N-1 prime-search starts, n = 2..N
  int kernel_size = 4;                     // w
  int hc_mult = 1;                         // M
  int64_t pad_id = 0;
  int64_t seed = 0;
  std::map<int, std::vector<int64_t>> multipliers;                    // layer -> N odd int64
  std::map<int, std::vector<std::vector<int64_t>>> head_vocab_sizes;  // layer -> [n-2][h] primes
  DType table_dtype = DType::kF32;
  std::map<int, std::string> table_files;  // layer -> file name inside the model directory

  bool enabled() const { return !layer_ids.empty(); }
  int row_width() const { return n_embed_per_ngram / n_head_per_ngram; }  // d
  int heads_per_layer() const { return (max_ngram_size - 1) * n_head_per_ngram; }
  int64_t embed_dim() const { return static_cast<int64_t>(max_ngram_size - 1) * n_embed_per_ngram; }
  // Position of `layer` in layer_ids, or -1.
  int SlotOf(int layer) const;
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
  EngramConfig engram;
};

// Parses and validates; `source` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j, const std::string& source);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);
// The inverse of ParseModelConfig, keys in a stable order.
std::string ModelConfigToJson(const ModelConfig& c);

}  // namespace engram
