// `engram-model create`: generates a complete, deterministic model directory
// (docs/model-format.md) — a BPE tokenizer trained on the built-in corpus or a real one
// (--tokenizer, external_tokenizer.h), config.json with the Engram multipliers and primes,
// random but well-scaled weights, and Engram tables of any size (tens of GB stream to disk). No
// weights can be downloaded here, so every test, the demo and the benchmarks run on models made by
// this command.
#include <sys/statvfs.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/memory/hashing.h"
#include "server/model/model_files.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/create_options.h"
#include "tools/engram_model/external_tokenizer.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/model_stats.h"
#include "tools/engram_model/prng.h"
#include "tools/engram_model/table_writer.h"
#include "tools/engram_model/tokenizer_writer.h"
#include "tools/engram_model/weights_gen.h"

namespace engram::tool {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMultiplierStream = 0x6d756c74ull;  // "mult"

// Odd positive multipliers below INT64_MAX / vocab, drawn like the reference demo draws them
// (r in [0, half_bound), m = 2r + 1). The bound uses the raw vocabulary size, an upper bound of
// the compressed one, so no product of a compressed id and a multiplier can overflow and the
// config does not depend on the Unicode tables the compressed vocabulary is computed with.
std::vector<int64_t> DrawMultipliers(uint64_t seed, int layer, int n, int64_t vocab) {
  const int64_t half_bound = std::max<int64_t>(1, (INT64_MAX / vocab) / 2);
  Rng rng(StreamSeed(seed, kMultiplierStream, static_cast<uint64_t>(layer)));
  std::vector<int64_t> m;
  for (int i = 0; i < n; ++i)
    m.push_back(2 * static_cast<int64_t>(rng.Below(static_cast<uint64_t>(half_bound))) + 1);
  return m;
}

// The special-token ids of the model, from the trained BPE or a real tokenizer.
struct TokenIds {
  int64_t bos = -1;
  std::vector<int64_t> eos;
  int64_t pad = 0;
};

ModelConfig BuildConfig(const CreateOptions& o, const TokenIds& tok) {
  ModelConfig c;
  c.hidden_size = static_cast<int>(o.hidden);
  c.intermediate_size = static_cast<int>(o.intermediate);
  c.num_hidden_layers = static_cast<int>(o.layers);
  c.num_attention_heads = static_cast<int>(o.heads);
  c.num_key_value_heads = static_cast<int>(o.kv_heads);
  c.head_dim = static_cast<int>(o.hidden / o.heads);
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.vocab_size = static_cast<int>(o.vocab);
  c.max_position_embeddings = static_cast<int>(o.max_position);
  c.tie_word_embeddings = o.tie_embeddings;
  c.bos_token_id = tok.bos;
  c.eos_token_ids = tok.eos;
  c.dtype = *DTypeFromConfig(o.dtype);
  c.hc_mult = static_cast<int>(o.hc_mult);
  EngramConfig& e = c.engram;
  for (int64_t l : o.engram_layers) e.layer_ids.push_back(static_cast<int>(l));
  e.max_ngram_size = static_cast<int>(o.max_ngram);
  e.n_embed_per_ngram = static_cast<int>(o.embed_per_ngram);
  e.n_head_per_ngram = static_cast<int>(o.heads_per_ngram);
  e.engram_vocab_size = o.engram_vocab_sizes;
  e.kernel_size = static_cast<int>(o.kernel_size);
  e.pad_id = tok.pad;
  e.seed = o.seed;
  e.table_dtype = *DTypeFromConfig(o.table_dtype);
  const auto primes = ComputeHeadPrimes(e);
  for (size_t slot = 0; slot < e.layer_ids.size(); ++slot) {
    const int l = e.layer_ids[slot];
    e.multipliers[l] = DrawMultipliers(static_cast<uint64_t>(o.seed), l, e.max_ngram_size, o.vocab);
    e.head_vocab_sizes[l] = primes[slot];
    e.table_files[l] = StrCat("engram-layer-", l, ".safetensors");
  }
  if (o.pkm()) {
    ProductKeyConfig& pk = c.product_key;
    for (int64_t l : o.pkm_layers) pk.layer_ids.push_back(static_cast<int>(l));
    pk.n_keys = o.pkm_n_keys;
    pk.heads = static_cast<int>(o.pkm_heads);
    pk.knn = static_cast<int>(o.pkm_knn);
    pk.k_dim = static_cast<int>(o.pkm_k_dim);
    pk.v_dim = static_cast<int>(o.pkm_v_dim);
    pk.share_values = o.pkm_share_values != 0;
    pk.swilu_projection = o.pkm_swilu != 0;
    pk.query_bias = o.pkm_query_bias != 0;
    pk.gated = o.pkm_gated != 0;
    pk.table_dtype = *DTypeFromConfig(o.pkm_table_dtype);
    if (pk.share_values) {
      pk.table_files[ProductKeyConfig::kSharedKey] = "memory-values.safetensors";
    } else {
      for (int l : pk.layer_ids)
        pk.table_files[std::to_string(l)] = StrCat("memory-values-", l, ".safetensors");
    }
  }
  return c;
}

// Files of a model directory that this tool writes or that a previous run may have left.
bool IsModelFile(const std::string& name) {
  return name == "config.json" || name == "tokenizer.json" || name == "tokenizer_config.json" ||
         name == "model.safetensors" || name == "model.safetensors.index.json" ||
         name == kCompressFile ||
         (name.rfind("engram-layer-", 0) == 0 && name.ends_with(".safetensors")) ||
         (name.rfind("memory-values", 0) == 0 && name.ends_with(".safetensors")) ||
         (name.rfind("model-", 0) == 0 && name.ends_with(".safetensors"));
}

// Removes the model files of a previous run, so a directory never mixes two models (stale
// shards, tables of layers the new model lacks, an old compress table).
absl::Status RemoveOldModelFiles(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!IsModelFile(entry.path().filename().string())) continue;
    if (!fs::remove(entry.path(), ec))
      return absl::PermissionDeniedError(
          StrCat(entry.path().string(), ": cannot remove: ", ec.message()));
  }
  if (ec) return absl::PermissionDeniedError(StrCat(dir, ": ", ec.message()));
  return absl::OkStatus();
}

// The bytes the model directory would hold after a run over it.
uint64_t ExistingModelBytes(const std::string& dir) {
  std::error_code ec;
  uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (IsModelFile(entry.path().filename().string()) && entry.is_regular_file(ec))
      total += entry.file_size(ec);
  return total;
}

// Refuses up front rather than failing half-way through a multi-GB table. `reclaimable` is
// what removing the previous model in the directory will free.
absl::Status CheckFreeSpace(const std::string& dir, uint64_t need, uint64_t reclaimable) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return absl::OkStatus();  // unknown: let writes decide
  const uint64_t avail = static_cast<uint64_t>(st.f_bavail) * st.f_frsize + reclaimable;
  if (need > avail)
    return absl::ResourceExhaustedError(StrCat(dir, ": the model needs ", HumanBytes(need),
                                               " but only ", HumanBytes(avail), " are free"));
  return absl::OkStatus();
}

absl::Status Create(CreateOptions o) {
  // The tokenizer first: a real one decides the vocabulary size.
  std::optional<ExternalTokenizer> ext;
  TokenizerSpec tok;
  TokenIds ids;
  if (!o.tokenizer.empty()) {
    ASSIGN_OR_RETURN(ext, LoadExternalTokenizer(o.tokenizer));
    if (o.vocab_explicit && o.vocab < ext->vocab_size)
      return absl::InvalidArgumentError(StrCat("--vocab ", o.vocab, " is smaller than the ",
                                               ext->vocab_size, " tokens of ", o.tokenizer));
    if (!o.vocab_explicit) o.vocab = ext->vocab_size;
    ids = {ext->bos_id, ext->eos_ids, ext->pad_id};
  } else {
    ASSIGN_OR_RETURN(tok, BuildTokenizer(o.vocab));
    ids = {tok.bos_id, {tok.eos_id}, tok.pad_id};
  }
  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec)
    return absl::PermissionDeniedError(StrCat(o.out, ": cannot create directory: ", ec.message()));

  const ModelConfig c = BuildConfig(o, ids);
  const ParamCounts params = CountParams(c);
  const uint64_t table_bytes = TotalTableBytes(c);
  const uint64_t backbone_bytes = static_cast<uint64_t>(params.total()) * DTypeSize(c.dtype);
  RETURN_IF_ERROR(CheckFreeSpace(o.out, table_bytes + backbone_bytes, ExistingModelBytes(o.out)));
  RETURN_IF_ERROR(RemoveOldModelFiles(o.out));
  int64_t table_rows = 0;
  for (int l : c.engram.layer_ids) table_rows += TableRows(c, l);

  const FlopsPerToken flops = ComputeFlops(c);
  if (!o.tokenizer_note.empty()) std::printf("%s\n", o.tokenizer_note.c_str());
  std::printf("creating %s (preset %s, seed %lld)\n", o.out.c_str(), o.preset.c_str(),
              static_cast<long long>(o.seed));
  if (ext) {
    std::printf("  backbone: %s parameters (%s, %s), tokenizer: %s (%lld tokens%s; %s)\n",
                WithCommas(params.total()).c_str(), std::string(DTypeToConfig(c.dtype)).c_str(),
                HumanBytes(backbone_bytes).c_str(), ext->tokenizer_path.c_str(),
                static_cast<long long>(ext->vocab_size),
                o.vocab > ext->vocab_size ? StrCat(", embedding padded to ", o.vocab).c_str() : "",
                ext->Describe().c_str());
  } else {
    std::printf(
        "  backbone: %s parameters (%s, %s), tokenizer: %lld tokens (%zu merges learned%s)\n",
        WithCommas(params.total()).c_str(), std::string(DTypeToConfig(c.dtype)).c_str(),
        HumanBytes(backbone_bytes).c_str(), static_cast<long long>(tok.vocab_size()),
        tok.bpe.merges.size(),
        tok.specials.size() > 3 ? ", corpus exhausted: reserved tokens fill the rest" : "");
  }
  if (c.engram.enabled()) {
    std::printf("  engram: layers %s, %s table rows of width %d in %s (%s)\n",
                absl::StrJoin(c.engram.layer_ids, ",").c_str(), WithCommas(table_rows).c_str(),
                c.engram.row_width(), std::string(DTypeToConfig(c.engram.table_dtype)).c_str(),
                HumanBytes(table_bytes).c_str());
    std::printf(
        "  FLOPs per token: backbone %.3g, engram projections %.3g (%.3f%% of the backbone)\n",
        flops.backbone, flops.engram, 100.0 * flops.ratio());
  }
  if (c.product_key.enabled()) {
    const ProductKeyConfig& pk = c.product_key;
    std::printf(
        "  product-key memory: layers %s, %lld keys per half (%s value rows of width %d "
        "in %s, %s), %d heads, knn %d\n",
        absl::StrJoin(pk.layer_ids, ",").c_str(), static_cast<long long>(pk.n_keys),
        WithCommas(pk.rows()).c_str(), pk.v_dim, std::string(DTypeToConfig(pk.table_dtype)).c_str(),
        pk.share_values ? "shared" : "one table per layer", pk.heads, pk.knn);
  }
  std::fflush(stdout);

  if (ext) {
    RETURN_IF_ERROR(CopyExternalTokenizer(*ext, o.out));
  } else {
    RETURN_IF_ERROR(WriteTokenizerFiles(o.out, tok, o.max_position));
  }
  RETURN_IF_ERROR(WriteBackbone(o.out, c, static_cast<uint64_t>(o.seed), o.pkm_value_proj != 0));
  RETURN_IF_ERROR(WriteEngramTables(o.out, c, static_cast<uint64_t>(o.seed)));
  if (o.compress_file) RETURN_IF_ERROR(WriteCompressFile(o.out, c));
  // config.json last: a directory without it is recognisably incomplete.
  {
    const std::string path = o.out + "/config.json";
    std::ofstream out(path, std::ios::trunc);
    out << ModelConfigToJson(c);
    out.close();
    if (!out) return absl::DataLossError(StrCat(path, ": write failed"));
  }
  // What was written must load; a failure here is a bug in this tool, reported as such.
  auto files = ModelFiles::Open(o.out);
  if (!files.ok())
    return absl::InternalError(
        StrCat("created model does not load: ", std::string(files.status().message())));
  std::printf("done: %s\n", o.out.c_str());
  return absl::OkStatus();
}

}  // namespace

int RunCreate(int argc, char** argv) {
  CreateOptions o;
  FlagParser p("create", "--out DIR [--preset tiny|demo|bench] [flags]",
               "Generates a model directory with random weights (deterministic for a seed).\n"
               "Explicit flags override the preset's values.");
  RegisterCreateFlags(&p, &o);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  if (absl::Status st = ResolveCreateOptions(p, &o); !st.ok()) {
    std::fprintf(stderr, "engram-model create: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  if (absl::Status st = Create(o); !st.ok()) {
    std::fprintf(stderr, "engram-model create: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace engram::tool
