// Writes the Engram tables of a generated model: engram-layer-<l>.safetensors, one [ΣP, d]
// table per layer in the configured dtype (fp8 with per-32 ue8m0 scales). Tables can be tens of
// GB, so rows are generated in chunks by all cores while the previous chunk is written, nothing
// is held whole, and a progress line (percent, GB/s, ETA) goes to stderr.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "server/model/config.h"

namespace engram::tool {

// Row r of layer l is drawn from blocks of kTableBlockRows rows, each with its own stream
// StreamSeed(seed, kTableStream, l, r / kTableBlockRows): the bytes do not depend on the chunk
// size or the number of threads.
inline constexpr int64_t kTableBlockRows = 1024;

absl::Status WriteEngramTables(const std::string& dir, const ModelConfig& c, uint64_t seed);

// Quantises one group of 32 floats to fp8 e4m3 with a shared ue8m0 scale: the smallest power
// of two 2^e with max|x| / 2^e <= 448. Returns the scale byte (e + 127).
uint8_t QuantizeFp8Block(const float* x, uint8_t* out);

}  // namespace engram::tool
