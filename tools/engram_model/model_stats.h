// Sizes and costs of a model configuration, shared by `create` (which prints them while it
// generates) and `info` (which prints them for an existing directory): parameter counts, table
// rows and bytes, and the per-token FLOPs of the backbone versus the Engram projections, the
// ratio the paper keeps tiny so that a huge table adds memory, not compute.
#pragma once

#include <cstdint>
#include <string>

#include "server/model/config.h"

namespace engram::tool {

struct ParamCounts {
  int64_t embedding = 0;  // model.embed_tokens
  int64_t lm_head = 0;    // 0 when tied
  int64_t blocks = 0;     // attention + MLP + norms
  int64_t engram = 0;     // Engram projections, norms and short conv (not the tables)
  int64_t total() const { return embedding + lm_head + blocks + engram; }
};
ParamCounts CountParams(const ModelConfig& c);

// Rows (Σ primes) and bytes (fp8 includes its scale bytes) of one Engram layer's table.
int64_t TableRows(const ModelConfig& c, int layer);
uint64_t TableBytes(const ModelConfig& c, int layer);
uint64_t TotalTableBytes(const ModelConfig& c);
// Bytes per table row in `dtype` for row width d (fp8: d bytes + d/32 scale bytes).
double BytesPerRow(DType dtype, int64_t d);

// Multiply-add FLOPs (2 per MAC) of one token's matrix products, excluding attention over the
// context (which grows with the sequence and is the same with or without Engram).
struct FlopsPerToken {
  double backbone = 0;  // q/k/v/o, MLP, lm_head
  double engram = 0;    // value/key projections and the short conv, all Engram layers
  double ratio() const { return backbone > 0 ? engram / backbone : 0; }
};
FlopsPerToken ComputeFlops(const ModelConfig& c);

std::string HumanBytes(uint64_t bytes);  // "1.50 GiB"
std::string WithCommas(int64_t n);       // "1,234,567"

}  // namespace engram::tool
