// The "engram" object of config.json (DESIGN §2.1, docs/model-format.md): what the hashing,
// the tables and the Engram module of each layer are sized by. It lives with the Engram memory
// (memory/) so that hashing needs nothing of the model; the model's config holds one.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engram/kernels/dtype.h"

namespace engram {

struct EngramConfig {
  std::vector<int> layer_ids;
  int max_ngram_size = 3;                  // N
  int n_embed_per_ngram = 0;               // E
  int n_head_per_ngram = 0;                // H
  std::vector<int64_t> engram_vocab_size;  // N-1 prime-search starts, n = 2..N
  int kernel_size = 4;                     // w
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
  int SlotOf(int layer) const {
    for (size_t i = 0; i < layer_ids.size(); ++i)
      if (layer_ids[i] == layer) return static_cast<int>(i);
    return -1;
  }
};

}  // namespace engram
