// One call that turns a model directory into a runnable model: validated files, the tokenizer,
// the compressed-id table (the shipped engram-compress.safetensors wins over the one computed
// from the tokenizer, DESIGN §2.1.1), and the weights bound to a backend. Used by engramd and
// by every engram-model command that runs the model.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/model/model.h"
#include "server/tokenizer/tokenizer.h"

namespace engram {

struct LoadedModel {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  int64_t num_compressed = 0;   // size of the compressed vocabulary
  std::string compress_source;  // "engram-compress.safetensors" or "tokenizer.json"
};

absl::StatusOr<LoadedModel> LoadModelDir(const std::string& dir, Backend* backend,
                                         const EngramMemoryOptions& memory = {});

}  // namespace engram
