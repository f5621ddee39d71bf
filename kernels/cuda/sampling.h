// Token sampling on the device, the engine's Sampler (server/engine/sampler.cc) per row of a
// batch of logits: penalties on the raw logits (repetition over prompt + output tokens, then
// presence and frequency over output counts), then greedy when temperature <= 0, otherwise the
// candidates sorted by logit (descending, ties by ascending id), top-k, softmax with
// temperature, top-p, min-p, and one uniform draw from the row's xoshiro256** stream.
//
// Same tokens as the CPU for the same logits and seed, with two documented exceptions, both at
// the level of float rounding (sampling_math.h and tests/cuda/sampling_test.cc measure them):
// the probabilities' sums are reduced in a tree instead of left to right, so a draw (or the
// top-p cut) that lands within ~1e-16 * total of a boundary between two candidates can fall on
// the other side; and a candidate weight can differ by one ulp from glibc's expf in rare cases.
//
// The penalty lists are CSR arrays the caller keeps per sequence: `seen` holds each row's
// distinct prompt and output tokens, `counts` each distinct output token with its count.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engram/kernels/sampling_math.h"

namespace engram::cuda {

using SamplingRowParams = ::engram::SamplingRow;

struct SampleParams {
  int rows = 0;
  int vocab = 0;
  float* logits = nullptr;                        // [rows][vocab], penalised in place
  const SamplingRowParams* row_params = nullptr;  // [rows]
  const int32_t* seen_offsets = nullptr;          // [rows + 1], nullptr = no seen lists
  const int32_t* seen_tokens = nullptr;
  const int32_t* count_offsets = nullptr;  // [rows + 1], nullptr = no output counts
  const int32_t* count_tokens = nullptr;
  const int32_t* count_values = nullptr;
  Xoshiro256* rng = nullptr;  // [rows], advanced once per non-greedy row
  int32_t* tokens = nullptr;  // [rows] out
  bool all_greedy = false;    // every row has temperature <= 0 (known on the host): no sort
  void* workspace = nullptr;  // SampleWorkspaceBytes(rows, vocab)
  size_t workspace_bytes = 0;
};

// The sort's buffers: about 24 bytes per logit plus CUB's scratch. Asks CUB, so it needs a
// device. rows < 2^31 / vocab.
size_t SampleWorkspaceBytes(int rows, int vocab);
void Sample(const SampleParams& p, cudaStream_t stream);

}  // namespace engram::cuda
