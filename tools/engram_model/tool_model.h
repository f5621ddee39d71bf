// Shared set-up of the engram-model commands that run the model (hash, forward, gates,
// generate): open the directory on a backend, turn --token-ids / --text into ids, and print
// float arrays as JSON with 9 significant digits (enough to round-trip a float32).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/model/model_loader.h"

namespace engram::tool {

struct ToolModel {
  BackendChoice backend;
  LoadedModel loaded;
  const ModelConfig& config() const { return loaded.model->config(); }
};

absl::StatusOr<std::unique_ptr<ToolModel>> OpenToolModel(const std::string& dir, int threads);

// Exactly one of `ids` (from --token-ids) and `text` must be given; ids are range-checked.
absl::StatusOr<std::vector<int32_t>> ResolveTokens(const ToolModel& m,
                                                   const std::vector<int64_t>& ids,
                                                   const std::string& text, bool ids_set,
                                                   bool text_set, bool add_special);

// Runs `tokens` as one sequence, either as one prefill step or (incremental) as a one-token
// prefill followed by one decode step per token; returns logits for every position and, when
// engram_layer >= 0, that layer's Engram input and output rows, plus gates per slot.
struct SequenceRun {
  std::vector<float> logits;                       // [T][vocab]
  std::vector<float> engram_input, engram_output;  // [T][M][D]
  std::vector<std::vector<float>> gates;           // [slot][T * M]
  // The product-key memory of block memory_layer: h in, o out, value rows chosen.
  std::vector<float> memory_input, memory_output;  // [T][D]
  std::vector<int64_t> memory_indices;             // [T][heads][knn]
};
absl::StatusOr<SequenceRun> RunSequence(ToolModel& m, const std::vector<int32_t>& tokens,
                                        bool incremental, int engram_layer, int memory_layer = -1);

// Writes rows of `width` floats (and `inner` > 1 groups them as [rows][inner][width/inner]).
void PrintFloatMatrix(std::FILE* out, const std::vector<float>& v, int64_t rows, int64_t width,
                      int inner);

// Prints "engram-model <cmd>: <message>" to stderr and returns 1.
int Fail(const char* cmd, const absl::Status& s);

}  // namespace engram::tool
