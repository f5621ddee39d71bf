// Typed views of the backbone and Engram projection weights. Matrices point into the mmap'd
// safetensors files (no copy, f32 or bf16 as stored); the small vectors (norms, biases, conv taps)
// are widened to float once at load because every step reads them.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/model/model_files.h"

namespace engram {

struct EngramWeights {
  Matrix value_proj;                           // [D][K]
  std::vector<float> value_bias;               // [D]
  std::vector<Matrix> key_proj;                // M x [D][K]
  std::vector<std::vector<float>> key_bias;    // M x [D]
  std::vector<std::vector<float>> key_norm;    // norm1, M x [D]
  std::vector<std::vector<float>> query_norm;  // norm2, M x [D]
  std::vector<std::vector<float>> conv_norm;   // M x [D]
  std::vector<float> conv_weight;              // [M*D][w]
  // Pointer arrays the backend ops take.
  std::vector<const float*> key_norm_ptrs, query_norm_ptrs, conv_norm_ptrs;
};

struct LayerWeights {
  Matrix q, k, v, o, gate, up, down;
  std::vector<float> input_norm, post_norm;
  int engram_slot = -1;  // index into Weights::engram, or -1
};

struct Weights {
  Matrix embed;
  Matrix lm_head;
  std::vector<float> final_norm;
  std::vector<LayerWeights> layers;
  std::vector<EngramWeights> engram;  // per slot
};

absl::StatusOr<Weights> LoadWeights(const ModelFiles& files);

}  // namespace engram
