// Typed views of the backbone and Engram projection weights, placed in the backend's memory.
// On the CPU, matrices point into the mmap'd safetensors files (no copy, f32 or bf16 as stored);
// a device backend copies them once. The small vectors (norms, biases, conv taps) are widened to
// float once at load because every step reads them; per-branch norms are packed [M][D].
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/model/model_files.h"

namespace engram {

struct EngramWeights {
  Matrix value_proj;                   // [D][K]
  const float* value_bias = nullptr;   // [D]
  std::vector<Matrix> key_proj;        // M x [D][K]
  std::vector<const float*> key_bias;  // M x [D]
  const float* key_norm = nullptr;     // norm1, [M][D]
  const float* query_norm = nullptr;   // norm2, [M][D]
  const float* conv_norm = nullptr;    // [M][D]
  const float* conv_weight = nullptr;  // [M*D][w]
};

// A product-key memory layer (DESIGN §2.4). Optional parts are null (bias, gating) or have
// data == nullptr (swilu, value_proj).
struct ProductKeyWeights {
  const float* keys = nullptr;  // [H][2][n][k_dim/2], widened to float
  Matrix query;                 // [H*k_dim][D]
  const float* query_bias = nullptr;
  Matrix swilu;  // [v_dim][D]
  const float* swilu_bias = nullptr;
  Matrix value_proj;  // [D][v_dim]
  const float* value_bias = nullptr;
  Matrix gating;  // [1][D]
  const float* gating_bias = nullptr;
};

struct LayerWeights {
  Matrix q, k, v, o, gate, up, down;  // gate/up/down empty where a memory replaces the MLP
  const float* input_norm = nullptr;
  const float* post_norm = nullptr;
  int engram_slot = -1;       // index into Weights::engram, or -1
  int product_key_slot = -1;  // index into Weights::product_key, or -1
};

// Every pointer is in the backend's memory (Backend::Resident).
struct Weights {
  Matrix embed;
  Matrix lm_head;
  const float* final_norm = nullptr;
  std::vector<LayerWeights> layers;
  std::vector<EngramWeights> engram;           // per slot
  std::vector<ProductKeyWeights> product_key;  // per product_key_memory.layer_ids entry
  // The widened float vectors, which a host-memory backend computes on in place.
  std::vector<std::vector<float>> host_vectors;
};

absl::StatusOr<Weights> LoadWeights(const ModelFiles& files, Backend* backend);

}  // namespace engram
