// Parameter, table and FLOP accounting for engram-model (see model_stats.h). Counts come from
// the same expected-tensor list the loader validates, so they cannot drift from the format.
#include "tools/engram_model/model_stats.h"
#include "server/util/str_cat.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "server/model/model_files.h"

namespace engram::tool {

ParamCounts CountParams(const ModelConfig& c) {
  ParamCounts p;
  for (const auto& t : ExpectedBackboneTensors(c)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (t.name == "model.embed_tokens.weight") {
      p.embedding += n;
    } else if (t.name == "lm_head.weight") {
      p.lm_head += n;
    } else if (absl::StrContains(t.name, ".engram.")) {
      p.engram += n;
    } else {
      p.blocks += n;
    }
  }
  return p;
}

int64_t TableRows(const ModelConfig& c, int layer) {
  int64_t rows = 0;
  auto it = c.engram.head_vocab_sizes.find(layer);
  if (it == c.engram.head_vocab_sizes.end()) return 0;
  for (const auto& per_n : it->second)
    for (int64_t p : per_n) rows += p;
  return rows;
}

double BytesPerRow(DType dtype, int64_t d) {
  if (dtype == DType::kF8E4M3) return static_cast<double>(d + d / kFp8BlockSize);
  return static_cast<double>(d * DTypeSize(dtype));
}

uint64_t TableBytes(const ModelConfig& c, int layer) {
  const int64_t d = c.engram.row_width();
  return static_cast<uint64_t>(TableRows(c, layer)) *
         static_cast<uint64_t>(BytesPerRow(c.engram.table_dtype, d));
}

uint64_t TotalTableBytes(const ModelConfig& c) {
  uint64_t total = 0;
  for (int layer : c.engram.layer_ids) total += TableBytes(c, layer);
  const ProductKeyConfig& pk = c.product_key;
  total += pk.table_files.size() * static_cast<uint64_t>(pk.rows()) *
           static_cast<uint64_t>(BytesPerRow(pk.table_dtype, pk.v_dim));
  return total;
}

FlopsPerToken ComputeFlops(const ModelConfig& c) {
  FlopsPerToken f;
  for (const auto& t : ExpectedBackboneTensors(c)) {
    if (t.shape.size() != 2) continue;  // norms and biases: negligible and not matmuls
    const double macs = static_cast<double>(t.shape[0]) * static_cast<double>(t.shape[1]);
    if (t.name == "model.embed_tokens.weight") {
      if (c.tie_word_embeddings) f.backbone += 2 * macs;  // it doubles as the LM head
    } else if (absl::StrContains(t.name, ".engram.")) {
      f.engram += 2 * macs;
    } else {
      f.backbone += 2 * macs;
    }
  }
  // Depthwise short conv: M*D channels, w taps each.
  const EngramConfig& e = c.engram;
  f.engram +=
      2.0 * static_cast<double>(e.layer_ids.size()) * c.hc_mult * c.hidden_size * e.kernel_size;
  return f;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrFormat("%d B", bytes) : absl::StrFormat("%.2f %s", v, units[u]);
}

std::string WithCommas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace engram::tool
