// Several small host arrays packed into one blob, each section 16-byte aligned for its widest
// element, so that a step's metadata reaches a device backend in one Upload instead of one per
// array (each upload is a copy the compute stream waits on).
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

#include "engram/kernels/backend.h"

namespace engram {

class UploadBlob {
 public:
  // Appends `v` and returns its offset in the blob.
  template <typename T>
  size_t Add(const std::vector<T>& v) {
    const size_t off = (bytes_.size() + 15) / 16 * 16;
    bytes_.resize(off + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(bytes_.data() + off, v.data(), v.size() * sizeof(T));
    return off;
  }
  // Uploads the blob into `dst` (grown as needed) and returns its base address there.
  char* UploadTo(Backend* backend, BackendBuffer& dst) const {
    dst.Reserve(backend, bytes_.empty() ? 1 : bytes_.size());
    backend->Upload(dst.get(), bytes_.data(), bytes_.size());
    return dst.get<char>();
  }

 private:
  std::vector<char> bytes_;
};

}  // namespace engram
