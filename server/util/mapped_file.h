// Read-only memory map of a whole file. Model weights and Engram tables are mapped rather than
// read so that a 100 GB table costs no RAM until rows are touched; the kernel pages them in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace engram {

class MappedFile {
 public:
  // Errors name the path and the failing system call.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Hint the access pattern for a byte range: random rows (tables) or sequential (weights).
  void AdviseRandom() const;
  void AdviseSequential() const;

 private:
  MappedFile(std::string path, const std::byte* data, uint64_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const std::byte* data_;
  uint64_t size_;
};

}  // namespace engram
