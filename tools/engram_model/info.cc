// `engram-model info DIR`: a human-readable summary of a model directory — backbone shape and
// parameters, Engram layers with their primes, multipliers and table sizes, the compressed
// vocabulary, and the per-token FLOPs of the Engram projections against the backbone. The
// directory is opened with the full loader validation first, so what is shown is what serves.
#include <cstdio>

#include "absl/strings/str_join.h"
#include "server/memory/compress.h"
#include "server/model/model_files.h"
#include "server/tokenizer/tokenizer.h"
#include "server/util/str_cat.h"
#include "tools/engram_model/commands.h"
#include "tools/engram_model/flags.h"
#include "tools/engram_model/model_stats.h"

namespace engram::tool {
namespace {

std::string Dt(DType d) { return std::string(DTypeToConfig(d)); }

// The compressed vocabulary size and where it comes from, or why it is unknown.
std::string CompressedVocab(const ModelFiles& f) {
  if (f.shipped_compress()) {
    int64_t max_id = -1;
    for (int64_t id : *f.shipped_compress()) max_id = std::max(max_id, id);
    return StrCat(WithCommas(max_id + 1), " (from ", kCompressFile, ")");
  }
  auto tok = Tokenizer::FromFile(f.tokenizer_path());
  if (!tok.ok()) return StrCat("unknown (", std::string(tok.status().message()), ")");
  const CompressTable t = BuildCompressTable(*tok);
  return StrCat(WithCommas(t.num_compressed), " (computed from tokenizer.json)");
}

void PrintProductKey(const ModelConfig& c) {
  const ProductKeyConfig& pk = c.product_key;
  if (!pk.enabled()) return;
  std::printf(
      "\nproduct-key memory: layers %s (their MLPs replaced), %d heads, knn %d, k_dim %d, "
      "v_dim %d\n",
      absl::StrJoin(pk.layer_ids, ",").c_str(), pk.heads, pk.knn, pk.k_dim, pk.v_dim);
  std::printf("  %s keys per half: %s value rows; swilu %s, query bias %s, gated %s\n",
              WithCommas(pk.n_keys).c_str(), WithCommas(pk.rows()).c_str(),
              pk.swilu_projection ? "yes" : "no", pk.query_bias ? "yes" : "no",
              pk.gated ? "yes" : "no");
  const uint64_t row_bytes = static_cast<uint64_t>(BytesPerRow(pk.table_dtype, pk.v_dim));
  for (const auto& [key, file] : pk.table_files)
    std::printf("  values table %s: %s rows x %d, %s, %s, %s\n", key.c_str(),
                WithCommas(pk.rows()).c_str(), pk.v_dim, Dt(pk.table_dtype).c_str(),
                HumanBytes(row_bytes * static_cast<uint64_t>(pk.rows())).c_str(), file.c_str());
}

void PrintInfo(const ModelFiles& f) {
  const ModelConfig& c = f.config();
  const ParamCounts p = CountParams(c);
  std::printf("model directory: %s\n\n", f.dir().c_str());
  std::printf("backbone (Llama, %s)\n", Dt(c.dtype).c_str());
  std::printf("  hidden %d, layers %d, attention heads %d (kv %d, head dim %d), intermediate %d\n",
              c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
              c.head_dim, c.intermediate_size);
  std::printf("  vocab %d, max positions %d, rope theta %g, rms eps %g, embeddings %s\n",
              c.vocab_size, c.max_position_embeddings, c.rope_theta, c.rms_norm_eps,
              c.tie_word_embeddings ? "tied" : "untied");
  std::printf("  bos %lld, eos %s\n", static_cast<long long>(c.bos_token_id),
              absl::StrJoin(c.eos_token_ids, ",").c_str());
  std::printf("  parameters: %s (embedding %s, lm_head %s, blocks %s, engram projections %s)\n",
              WithCommas(p.total()).c_str(), WithCommas(p.embedding).c_str(),
              WithCommas(p.lm_head).c_str(), WithCommas(p.blocks).c_str(),
              WithCommas(p.engram).c_str());
  std::printf("  weights: %s in %s\n",
              HumanBytes(static_cast<uint64_t>(p.total()) * DTypeSize(c.dtype)).c_str(),
              f.Backbone("model.embed_tokens.weight")->file->path().c_str());

  PrintProductKey(c);
  const EngramConfig& e = c.engram;
  if (!e.enabled()) {
    std::printf("\nno Engram layers\n");
    return;
  }
  std::printf(
      "\nengram: layers %s, N %d, heads per n-gram %d, E %d (row width %d), branches %d, "
      "kernel %d\n",
      absl::StrJoin(e.layer_ids, ",").c_str(), e.max_ngram_size, e.n_head_per_ngram,
      e.n_embed_per_ngram, e.row_width(), c.hc_mult, e.kernel_size);
  std::printf("  table dtype %s, pad id %lld, seed %lld, engram_vocab_size [%s]\n",
              Dt(e.table_dtype).c_str(), static_cast<long long>(e.pad_id),
              static_cast<long long>(e.seed), absl::StrJoin(e.engram_vocab_size, ", ").c_str());
  for (size_t slot = 0; slot < e.layer_ids.size(); ++slot) {
    const int l = e.layer_ids[slot];
    std::printf("  layer %d: %s rows x %d, %s, %s\n", l, WithCommas(TableRows(c, l)).c_str(),
                e.row_width(), HumanBytes(TableBytes(c, l)).c_str(), e.table_files.at(l).c_str());
    std::printf("    multipliers [%s]\n", absl::StrJoin(e.multipliers.at(l), ", ").c_str());
    const auto& primes = e.head_vocab_sizes.at(l);
    for (size_t n = 0; n < primes.size(); ++n)
      std::printf("    n=%zu primes [%s]\n", n + 2, absl::StrJoin(primes[n], ", ").c_str());
  }
  std::printf("  total table: %s\n", HumanBytes(TotalTableBytes(c)).c_str());
  std::printf("  compressed vocabulary: %s\n", CompressedVocab(f).c_str());
  const FlopsPerToken fl = ComputeFlops(c);
  std::printf("\nFLOPs per token (matrix products, excluding attention over the context):\n");
  std::printf("  backbone %s, engram projections %s: ratio %.3f%%\n",
              WithCommas(static_cast<int64_t>(fl.backbone)).c_str(),
              WithCommas(static_cast<int64_t>(fl.engram)).c_str(), 100.0 * fl.ratio());
}

}  // namespace

int RunInfo(int argc, char** argv) {
  FlagParser p("info", "DIR", "Summarises a model directory (after validating it).");
  p.SetPositional("DIR", 1, 1);
  if (int rc = ParseFlagsOrExit(p, argc, argv); rc >= 0) return rc;
  auto files = ModelFiles::Open(p.positional()[0]);
  if (!files.ok()) {
    std::fprintf(stderr, "engram-model info: %s\n", std::string(files.status().message()).c_str());
    return 1;
  }
  PrintInfo(**files);
  return 0;
}

}  // namespace engram::tool
