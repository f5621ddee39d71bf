// Presets, flags and validation of `engram-model create` (see create_options.h).
#include "tools/engram_model/create_options.h"

#include <algorithm>
#include <cmath>

#include "server/util/status_macros.h"
#include "server/util/str_cat.h"
#include "tools/engram_model/external_tokenizer.h"
#include "tools/engram_model/model_stats.h"

namespace engram::tool {

absl::Status ApplyPreset(const std::string& name, CreateOptions* o) {
  // Shared defaults: a Llama layout with the reference demo's Engram shape (N = 3, w = 4).
  o->max_ngram = 3;
  o->kernel_size = 4;
  o->seed = 0;
  o->tie_embeddings = false;
  if (name == "tiny") {
    // Unit tests and golden comparisons: seconds to create, < 20 MB, float32 throughout so a
    // reference implementation can match it tightly; two branches exercise hc_mult.
    o->hidden = 64, o->layers = 2, o->heads = 4, o->kv_heads = 2, o->intermediate = 128;
    o->vocab = 512, o->engram_layers = {0, 1};
    o->heads_per_ngram = 4, o->embed_per_ngram = 64, o->engram_vocab_sizes = {3000, 2000};
    o->hc_mult = 2, o->table_dtype = "float32", o->dtype = "float32";
    o->max_position = 2048;
    o->pkm_layers = {1}, o->pkm_n_keys = 16, o->pkm_heads = 2, o->pkm_knn = 4, o->pkm_k_dim = 16;
    o->pkm_table_dtype = "float32";
  } else if (name == "demo") {
    // What the README serves: generates quickly on 2 CPU cores; ~40 MB of bf16 tables.
    o->hidden = 256, o->layers = 4, o->heads = 8, o->kv_heads = 4, o->intermediate = 768;
    o->vocab = 4096, o->engram_layers = {1, 2};
    o->heads_per_ngram = 8, o->embed_per_ngram = 256, o->engram_vocab_sizes = {20000, 20000};
    o->hc_mult = 1, o->table_dtype = "bfloat16", o->dtype = "float32";
    o->max_position = 4096;
    o->pkm_layers = {3}, o->pkm_n_keys = 256, o->pkm_heads = 4, o->pkm_knn = 16;
    o->pkm_k_dim = 128, o->pkm_table_dtype = "bfloat16";
  } else if (name == "bench") {
    // A dense serving model scaled to this machine; like the paper's, its Engram projections
    // cost < 0.5% of the backbone's FLOPs, so what a benchmark measures is the table lookup.
    // 64-byte bf16 rows (d = 32, also valid for fp8). Table size from --table-gb (default 1).
    // The tokenizer is DeepSeek-V3's, as in the paper's models, when it is installed
    // (ResolveCreateOptions); the vocab then becomes its 128815 tokens.
    o->hidden = 1024, o->layers = 8, o->heads = 16, o->kv_heads = 8, o->intermediate = 3072;
    o->vocab = 8192, o->engram_layers = {1, 5};
    o->heads_per_ngram = 2, o->embed_per_ngram = 64, o->engram_vocab_sizes = {};
    o->hc_mult = 1, o->table_dtype = "bfloat16", o->dtype = "bfloat16";
    o->max_position = 4096;
    o->table_gb = 1;
    // Memory Layers at Scale's shape: 4 heads, k = 32, k_dim 512, values of width D.
    o->pkm_layers = {2, 6}, o->pkm_heads = 4, o->pkm_knn = 32, o->pkm_k_dim = 512;
    o->pkm_table_dtype = "bfloat16";
  } else {
    return absl::InvalidArgumentError(
        StrCat("--preset: expected one of tiny, demo, bench, got '", name, "'"));
  }
  return absl::OkStatus();
}

void RegisterCreateFlags(FlagParser* p, CreateOptions* o) {
  p->AddString("out", &o->out, "output directory (created; model files in it are replaced)");
  p->AddString("preset", &o->preset, "starting point for every other flag (default tiny)",
               {"tiny", "demo", "bench"});
  p->AddInt("hidden", &o->hidden, "hidden size D", 1, 1 << 16);
  p->AddInt("layers", &o->layers, "number of decoder blocks", 1, 1024);
  p->AddInt("heads", &o->heads, "attention heads", 1, 1024);
  p->AddInt("kv-heads", &o->kv_heads, "key/value heads (GQA); divides --heads", 1, 1024);
  p->AddInt("intermediate", &o->intermediate, "MLP intermediate size", 1, 1 << 20);
  p->AddInt("vocab", &o->vocab,
            "vocabulary size: 256 bytes + learned merges + 3 specials (with --tokenizer: "
            "embedding rows, at least the tokenizer's size)",
            259, 1 << 20);
  p->AddIntList("engram-layers", &o->engram_layers,
                "blocks with an Engram module, ascending (\"none\": a plain Llama)", 0, 1023,
                /*none_ok=*/true);
  p->AddInt("max-ngram", &o->max_ngram, "N: n-grams of size 2..N are hashed", 2, 16);
  p->AddInt("heads-per-ngram", &o->heads_per_ngram, "H: hash heads per n-gram size", 1, 256);
  p->AddInt("embed-per-ngram", &o->embed_per_ngram, "E: embedding width per n-gram (row width E/H)",
            1, 1 << 16);
  p->AddIntList("engram-vocab-sizes", &o->engram_vocab_sizes,
                "N-1 prime-search starts (rows per head), n = 2..N", 2, int64_t{1} << 40);
  p->AddInt("hc-mult", &o->hc_mult, "M: residual branches (hyper-connections)", 1, 64);
  p->AddInt("kernel-size", &o->kernel_size, "w: taps of the Engram short conv", 1, 64);
  p->AddString("table-dtype", &o->table_dtype, "element type of the Engram tables",
               {"float32", "bfloat16", "float16", "float8_e4m3"});
  p->AddString("dtype", &o->dtype, "element type of the backbone weights", {"float32", "bfloat16"});
  p->AddInt("seed", &o->seed, "seed of every random draw", 0, INT64_MAX);
  p->AddDouble("table-gb", &o->table_gb,
               "total size of all Engram tables in GiB (sets the rows per head); with --memory "
               "pkm, of the product-key values tables (sets --pkm-n-keys)",
               /*positive=*/true);
  p->AddInt("max-position", &o->max_position, "max_position_embeddings", 1, 1 << 24);
  p->AddBool("tie-embeddings", &o->tie_embeddings, "share the embedding with the LM head");
  p->AddBool("compress-file", &o->compress_file,
             "also write engram-compress.safetensors (the compressed-id table)");
  p->AddString("memory", &o->memory,
               "memory layer kinds: engram (DESIGN 2.1), pkm (product-key memory, 2.4), both, or "
               "none",
               {"engram", "pkm", "engram,pkm", "none"});
  p->AddIntList("pkm-layers", &o->pkm_layers,
                "blocks whose MLP a product-key memory replaces, ascending", 0, 1023);
  p->AddInt("pkm-n-keys", &o->pkm_n_keys, "n: sub-keys per half (n^2 value rows)", 1, 1 << 30);
  p->AddInt("pkm-heads", &o->pkm_heads, "H: memory read heads", 2, 1024);
  p->AddInt("pkm-knn", &o->pkm_knn, "k: rows read per head (<= n)", 1, 4096);
  p->AddInt("pkm-k-dim", &o->pkm_k_dim, "query/key width per head (even)", 2, 1 << 16);
  p->AddInt("pkm-v-dim", &o->pkm_v_dim, "value row width (default: --hidden)", 1, 1 << 20);
  p->AddInt("pkm-share-values", &o->pkm_share_values,
            "1: one values table for every memory layer; 0: one per layer", 0, 1);
  p->AddInt("pkm-swilu", &o->pkm_swilu, "1: o = value_proj(y * SiLU(swilu_projection(x)))", 0, 1);
  p->AddInt("pkm-value-proj", &o->pkm_value_proj,
            "without swilu and with v_dim = hidden: 1 writes value_proj, 0 leaves it out", 0, 1);
  p->AddInt("pkm-query-bias", &o->pkm_query_bias, "1: the query projection has a bias", 0, 1);
  p->AddInt("pkm-gated", &o->pkm_gated, "1: o scaled by sigmoid(gating(x))", 0, 1);
  p->AddString("pkm-table-dtype", &o->pkm_table_dtype, "element type of the values tables",
               {"float32", "bfloat16", "float16", "float8_e4m3"});
  p->AddString("tokenizer", &o->tokenizer,
               "a Hugging Face tokenizer.json (byte-level BPE: DeepSeek-V3, Llama 3, Qwen 3, ...) "
               "to build the model around: vocab, bos/eos/pad from it; tokenizer_config.json "
               "beside it is copied too. 'trained' (default; bench: DeepSeek-V3's when "
               "scripts/install-deps.sh installed it) trains a BPE on the built-in corpus");
}

absl::Status ResolveProductKeyOptions(const FlagParser& p, CreateOptions* o) {
  if (!o->pkm()) return absl::OkStatus();
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(StrCat(parts...)); };
  if (o->pkm_layers.empty()) return bad("--memory pkm needs --pkm-layers");
  for (size_t i = 0; i < o->pkm_layers.size(); ++i) {
    const int64_t l = o->pkm_layers[i];
    if (l >= o->layers)
      return bad("--pkm-layers: layer ", l, " does not exist (--layers ", o->layers, ")");
    if (i > 0 && l <= o->pkm_layers[i - 1]) return bad("--pkm-layers must be strictly ascending");
    if (std::find(o->engram_layers.begin(), o->engram_layers.end(), l) != o->engram_layers.end())
      return bad("--pkm-layers: layer ", l, " also has an Engram layer (--engram-layers)");
  }
  if (o->hc_mult != 1)
    return bad(
        "--memory pkm needs --hc-mult 1 (product-key memory is defined for a plain "
        "residual stream)");
  if (o->pkm_k_dim % 2 != 0) return bad("--pkm-k-dim ", o->pkm_k_dim, " must be even");
  const DType dt = *DTypeFromConfig(o->pkm_table_dtype);
  if (dt == DType::kF8E4M3 && o->pkm_v_dim % kFp8BlockSize != 0)
    return bad("--pkm-table-dtype float8_e4m3 needs --pkm-v-dim a multiple of ", kFp8BlockSize);
  if (!o->pkm_swilu && !o->pkm_value_proj && o->pkm_v_dim != o->hidden)
    return bad("--pkm-value-proj 0 needs --pkm-v-dim = --hidden (", o->hidden, ")");
  if (o->table_gb > 0 && !p.IsSet("pkm-n-keys")) {
    const double tables = o->pkm_share_values ? 1.0 : static_cast<double>(o->pkm_layers.size());
    const double rows =
        o->table_gb * static_cast<double>(1ull << 30) / tables / BytesPerRow(dt, o->pkm_v_dim);
    const auto n = static_cast<int64_t>(std::floor(std::sqrt(rows)));
    if (n < o->pkm_knn)
      return bad("--table-gb ", o->table_gb, " is too small for --pkm-knn ", o->pkm_knn, " keys");
    o->pkm_n_keys = n;
  }
  if (o->pkm_knn > o->pkm_n_keys)
    return bad("--pkm-knn ", o->pkm_knn, " exceeds --pkm-n-keys ", o->pkm_n_keys);
  return absl::OkStatus();
}

absl::Status ResolveCreateOptions(const FlagParser& p, CreateOptions* o) {
  if (o->out.empty()) return absl::InvalidArgumentError("--out DIR is required");
  CreateOptions pre;
  if (absl::Status st = ApplyPreset(o->preset, &pre); !st.ok()) return st;
  auto keep = [&](const char* flag, auto& dst, const auto& src) {
    if (!p.IsSet(flag)) dst = src;
  };
  keep("hidden", o->hidden, pre.hidden);
  keep("layers", o->layers, pre.layers);
  keep("heads", o->heads, pre.heads);
  keep("kv-heads", o->kv_heads, pre.kv_heads);
  keep("intermediate", o->intermediate, pre.intermediate);
  keep("vocab", o->vocab, pre.vocab);
  keep("engram-layers", o->engram_layers, pre.engram_layers);
  keep("max-ngram", o->max_ngram, pre.max_ngram);
  keep("heads-per-ngram", o->heads_per_ngram, pre.heads_per_ngram);
  keep("embed-per-ngram", o->embed_per_ngram, pre.embed_per_ngram);
  keep("hc-mult", o->hc_mult, pre.hc_mult);
  keep("kernel-size", o->kernel_size, pre.kernel_size);
  keep("table-dtype", o->table_dtype, pre.table_dtype);
  keep("dtype", o->dtype, pre.dtype);
  keep("seed", o->seed, pre.seed);
  keep("max-position", o->max_position, pre.max_position);
  keep("tie-embeddings", o->tie_embeddings, pre.tie_embeddings);
  keep("pkm-layers", o->pkm_layers, pre.pkm_layers);
  keep("pkm-n-keys", o->pkm_n_keys, pre.pkm_n_keys);
  keep("pkm-heads", o->pkm_heads, pre.pkm_heads);
  keep("pkm-knn", o->pkm_knn, pre.pkm_knn);
  keep("pkm-k-dim", o->pkm_k_dim, pre.pkm_k_dim);
  keep("pkm-table-dtype", o->pkm_table_dtype, pre.pkm_table_dtype);
  if (!p.IsSet("pkm-v-dim")) o->pkm_v_dim = o->hidden;
  if (o->pkm()) {
    // Product-key memory is defined on a plain residual stream; the preset's Engram layers
    // give way to it on shared blocks unless both were asked for explicitly.
    if (!p.IsSet("hc-mult")) o->hc_mult = 1;
    if (!o->engram()) {
      if (!p.IsSet("engram-layers")) o->engram_layers.clear();
    } else if (!p.IsSet("engram-layers")) {
      std::erase_if(o->engram_layers, [&](int64_t l) {
        return std::find(o->pkm_layers.begin(), o->pkm_layers.end(), l) != o->pkm_layers.end();
      });
    }
  } else {
    o->pkm_layers.clear();
    if (o->memory == "none" && !p.IsSet("engram-layers")) o->engram_layers.clear();
  }
  o->vocab_explicit = p.IsSet("vocab");
  if (!p.IsSet("tokenizer") && o->preset == "bench") {
    o->tokenizer = InstalledDeepSeekV3Tokenizer();
    if (o->tokenizer.empty())
      o->tokenizer_note =
          "note: the bench preset uses DeepSeek-V3's tokenizer, which is not installed "
          "(scripts/install-deps.sh installs it; or pass --tokenizer PATH); training a BPE "
          "instead";
  }
  if (o->tokenizer == "trained") o->tokenizer.clear();
  if (p.IsSet("table-gb") && p.IsSet("engram-vocab-sizes"))
    return absl::InvalidArgumentError(
        "--table-gb and --engram-vocab-sizes both set the table size; give one of them");
  if (!p.IsSet("table-gb") && !p.IsSet("engram-vocab-sizes")) {
    o->table_gb = pre.table_gb;
    o->engram_vocab_sizes = pre.engram_vocab_sizes;
  }

  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(StrCat(parts...)); };
  if (o->hidden % o->heads != 0)
    return bad("--hidden ", o->hidden, " is not a multiple of --heads ", o->heads);
  if ((o->hidden / o->heads) % 2 != 0)
    return bad("head dim --hidden / --heads = ", o->hidden / o->heads,
               " must be even (rotate-half RoPE)");
  if (o->heads % o->kv_heads != 0)
    return bad("--kv-heads ", o->kv_heads, " does not divide --heads ", o->heads);
  for (size_t i = 0; i < o->engram_layers.size(); ++i) {
    if (o->engram_layers[i] >= o->layers)
      return bad("--engram-layers: layer ", o->engram_layers[i], " does not exist (--layers ",
                 o->layers, ")");
    if (i > 0 && o->engram_layers[i] <= o->engram_layers[i - 1])
      return bad("--engram-layers must be strictly ascending");
  }
  RETURN_IF_ERROR(ResolveProductKeyOptions(p, o));
  if (o->engram_layers.empty()) {
    if (o->compress_file) return bad("--compress-file needs Engram layers");
    return absl::OkStatus();
  }
  if (o->pkm() && !o->engram() && o->table_gb > 0 && !p.IsSet("engram-vocab-sizes"))
    o->table_gb = 0;  // --table-gb sized the values tables
  if (o->embed_per_ngram % o->heads_per_ngram != 0)
    return bad("--embed-per-ngram ", o->embed_per_ngram, " is not a multiple of --heads-per-ngram ",
               o->heads_per_ngram);
  const int64_t d = o->embed_per_ngram / o->heads_per_ngram;
  const DType table_dtype = *DTypeFromConfig(o->table_dtype);
  if (table_dtype == DType::kF8E4M3 && d % kFp8BlockSize != 0)
    return bad(
        "--table-dtype float8_e4m3 needs a row width (--embed-per-ngram / --heads-per-ngram "
        "= ",
        d, ") that is a multiple of ", kFp8BlockSize);
  if (o->table_gb > 0) {
    const double bytes = o->table_gb * static_cast<double>(1ull << 30);
    const double rows =
        bytes / static_cast<double>(o->engram_layers.size()) / BytesPerRow(table_dtype, d);
    const double per_head =
        std::floor(rows / static_cast<double>((o->max_ngram - 1) * o->heads_per_ngram));
    if (per_head < 2) return bad("--table-gb ", o->table_gb, " is too small for one row per head");
    if (per_head > static_cast<double>(int64_t{1} << 40))
      return bad("--table-gb ", o->table_gb, " is too large");
    o->engram_vocab_sizes.assign(static_cast<size_t>(o->max_ngram - 1),
                                 static_cast<int64_t>(per_head));
  }
  if (static_cast<int64_t>(o->engram_vocab_sizes.size()) != o->max_ngram - 1)
    return bad("--engram-vocab-sizes needs --max-ngram - 1 = ", o->max_ngram - 1, " values, got ",
               o->engram_vocab_sizes.size());
  return absl::OkStatus();
}

}  // namespace engram::tool
