// The options of `engram-model create`, its presets, and their validation. Kept apart from the
// generation code so every rule a user can trip over lives in one place and speaks in terms of
// flags ("--hidden 100 is not a multiple of --heads 3"), not config keys.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/model/config.h"
#include "tools/engram_model/flags.h"

namespace engram::tool {

struct CreateOptions {
  std::string out;
  std::string preset = "tiny";
  int64_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, intermediate = 0, vocab = 0;
  std::vector<int64_t> engram_layers;
  int64_t max_ngram = 0, heads_per_ngram = 0, embed_per_ngram = 0;
  std::vector<int64_t> engram_vocab_sizes;
  int64_t hc_mult = 0, kernel_size = 0;
  std::string table_dtype, dtype;
  int64_t seed = 0;
  double table_gb = 0;  // 0: use engram_vocab_sizes
  int64_t max_position = 0;
  bool tie_embeddings = false;
  bool compress_file = false;
  // A Hugging Face tokenizer.json to build the model around (external_tokenizer.h); "" trains
  // a byte-level BPE on the built-in corpus. vocab_explicit: --vocab was given (it may then only
  // pad the real tokenizer's vocabulary).
  std::string tokenizer;
  bool vocab_explicit = false;
  std::string tokenizer_note;  // why the preset's tokenizer was not used, printed by create

  // Memory kinds (--memory engram|pkm|engram,pkm|none) and product-key memory (DESIGN §2.4).
  std::string memory = "engram";
  bool engram() const { return memory == "engram" || memory == "engram,pkm"; }
  bool pkm() const { return memory == "pkm" || memory == "engram,pkm"; }
  std::vector<int64_t> pkm_layers;
  int64_t pkm_n_keys = 0, pkm_heads = 0, pkm_knn = 0, pkm_k_dim = 0, pkm_v_dim = 0;
  int64_t pkm_share_values = 1, pkm_swilu = 1, pkm_value_proj = 1, pkm_query_bias = 1;
  int64_t pkm_gated = 0;
  std::string pkm_table_dtype;
};

// Presets: tiny (tests, < 20 MB), demo (what the README serves), bench (serving benchmarks).
absl::Status ApplyPreset(const std::string& name, CreateOptions* o);

void RegisterCreateFlags(FlagParser* p, CreateOptions* o);
// Fills everything not given on the command line from the preset, sizes the tables for
// --table-gb, and validates the result.
absl::Status ResolveCreateOptions(const FlagParser& p, CreateOptions* o);

// Writes engram-compress.safetensors for the model in `dir` (tokenizer.json already written).
absl::Status WriteCompressFile(const std::string& dir, const ModelConfig& c);

}  // namespace engram::tool
