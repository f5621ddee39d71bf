// safetensors files: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the data. Files are mmap'd, never read whole: a 100 GB
// Engram table costs nothing until rows are touched. Every header is validated before use
// (length, JSON, dtype x shape == range, ranges inside the file and disjoint), so a corrupt or
// hostile file yields an error naming the file and tensor instead of an out-of-bounds read.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engram/kernels/dtype.h"
#include "server/util/mapped_file.h"

namespace engram {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;

  int64_t numel() const;
  std::string ShapeString() const;  // "[4, 8]"
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses a header from memory; `file_size` bounds the ranges. Used by Open and the fuzzer.
  static absl::StatusOr<std::vector<TensorInfo>> ParseHeader(
      std::span<const std::byte> bytes, std::string_view path,
      std::map<std::string, std::string>* metadata);

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* Find(std::string_view name) const;
  const std::byte* data(const TensorInfo& t) const { return file_->data() + t.offset; }
  const MappedFile& file() const { return *file_; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

// Streams a safetensors file to disk: declare every tensor, then write their bytes in the
// declared order. Tensors of tens of GB are written in pieces and never held in memory.
class SafetensorsWriter {
 public:
  SafetensorsWriter() = default;
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void Declare(std::string name, DType dtype, std::vector<int64_t> shape);
  void SetMetadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }
  // Writes the header. Data follows with Append, in declaration order.
  absl::Status Open(const std::string& path);
  absl::Status Append(const void* data, uint64_t nbytes);
  // Leaves a hole of `nbytes` zeros (a sparse region on file systems that support it).
  absl::Status Skip(uint64_t nbytes);
  // Checks every declared byte was written, then closes the file.
  absl::Status Close();

  // Convenience: a small file of float32/any tensors held in memory.
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
  };
  static absl::Status WriteFile(const std::string& path, const std::vector<Tensor>& tensors,
                                const std::map<std::string, std::string>& metadata = {});

 private:
  std::vector<TensorInfo> decl_;
  std::map<std::string, std::string> metadata_;
  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t expected_ = 0;
  uint64_t written_ = 0;
};

}  // namespace engram
