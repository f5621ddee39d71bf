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
#include "server/util/safetensors.h"

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
  bool optional = false;      // may be absent; checked when present (its presence means something)
};

// Tensors model.safetensors (or its shards) must hold for `c`.
std::vector<ExpectedTensor> ExpectedBackboneTensors(const ModelConfig& c);
// Tensors engram-layer-<layer>.safetensors must hold.
std::vector<ExpectedTensor> ExpectedTableTensors(const ModelConfig& c, int layer);

// Tensors a product-key values file must hold; `key` is a table_files key ("shared" or a layer).
std::vector<ExpectedTensor> ExpectedProductKeyTableTensors(const ModelConfig& c,
                                                           const std::string& key);
// Backbone tensors a block must not have: the MLP of a block whose MLP a memory layer replaces.
std::vector<std::string> ForbiddenBackboneTensors(const ModelConfig& c);

// Standard names.
std::string EngramPrefix(int layer);  // "model.layers.<l>.engram."
std::string TableTensorName(int layer);
std::string TableScaleTensorName(int layer);
std::string ProductKeyPrefix(int layer);  // "model.layers.<l>.memory."
// "model.memory.values.weight" (key "shared") or "model.layers.<l>.memory.values.weight".
std::string ProductKeyValuesName(const std::string& key);
std::string ProductKeyValuesScaleName(const std::string& key);
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
  // The product-key values file of table_files key `key` (validated at Open).
  const SafetensorsFile& ProductKeyFile(const std::string& key) const {
    return *pkm_tables_.at(key);
  }
  TensorView ProductKeyValues(const std::string& key) const;
  std::optional<TensorView> ProductKeyValuesScale(const std::string& key) const;
  // engram-compress.safetensors as int64, validated (size == vocab, ids >= 0), if shipped.
  const std::optional<std::vector<int64_t>>& shipped_compress() const { return compress_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::string tokenizer_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>, std::less<>> index_;
  std::vector<std::unique_ptr<SafetensorsFile>> tables_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> pkm_tables_;
  std::optional<std::vector<int64_t>> compress_;
};

}  // namespace engram
