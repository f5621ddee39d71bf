// Opens a model directory (docs/model-format.md) and validates it completely before any weight is
// used: config keys, the prime walk and multipliers, every expected tensor's presence, dtype and
// shape, in the backbone shards and in each Engram table file. Nothing large is read: files are
// mmap'd and only their headers are parsed. Errors name the file and the tensor or key.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model/config.h"
#include "server/model/safetensors.h"

namespace engram {

// A tensor inside a mapped file.
struct TensorView {
  const std::byte* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const TensorInfo* info = nullptr;
  const SafetensorsFile* file = nullptr;
};

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<DType> dtypes;  // any of these is accepted
};

// Tensors model.safetensors (or its shards) must hold for `c`.
std::vector<ExpectedTensor> ExpectedBackboneTensors(const ModelConfig& c);
// Tensors engram-layer-<layer>.safetensors must hold.
std::vector<ExpectedTensor> ExpectedTableTensors(const ModelConfig& c, int layer);

// Standard names.
std::string EngramPrefix(int layer);  // "model.layers.<l>.engram."
std::string TableTensorName(int layer);
std::string TableScaleTensorName(int layer);
inline constexpr char kCompressFile[] = "engram-compress.safetensors";
inline constexpr char kCompressTensor[] = "compressed_ids";

class ModelFiles {
 public:
  static absl::StatusOr<std::unique_ptr<ModelFiles>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const ModelConfig& config() const { return config_; }
  const std::string& tokenizer_path() const { return tokenizer_path_; }

  // Backbone tensor by name; the tensor exists (validated at Open) when the name is expected.
  std::optional<TensorView> Backbone(const std::string& name) const;
  // The table (and fp8 scale) of Engram slot `slot` (index into config().engram.layer_ids).
  TensorView Table(int slot) const;
  std::optional<TensorView> TableScale(int slot) const;
  const SafetensorsFile& TableFile(int slot) const { return *tables_[slot]; }
  // engram-compress.safetensors as int64, validated (size == vocab, ids >= 0), if shipped.
  const std::optional<std::vector<int64_t>>& shipped_compress() const { return compress_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::string tokenizer_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>, std::less<>> index_;
  std::vector<std::unique_ptr<SafetensorsFile>> tables_;
  std::optional<std::vector<int64_t>> compress_;
};

}  // namespace engram
