// Row access to one Engram layer's table. Today the table is read straight from its mmap'd
// safetensors file (the kernel pages rows in on demand); the tiered store of the memory-tier issue
// (RAM copy, SSD, row cache) implements the same "copy these global rows into this buffer" call.
#pragma once

#include <cstdint>

#include "engram/kernels/dtype.h"
#include "server/model/model_files.h"

namespace engram {

class EngramTable {
 public:
  // `slot` indexes config().engram.layer_ids.
  EngramTable(const ModelFiles& files, int slot);

  int64_t rows() const { return rows_; }
  int row_width() const { return d_; }
  DType dtype() const { return dtype_; }
  uint64_t row_bytes() const { return static_cast<uint64_t>(d_) * DTypeSize(dtype_); }

  // out[i][0..d) = dequantised row ids[i], for n ids; ids are global rows in [0, rows()).
  void Gather(const int64_t* ids, int64_t n, float* out) const;

 private:
  const std::byte* data_;
  const uint8_t* scales_ = nullptr;  // fp8: [rows][d/32] ue8m0
  int64_t rows_;
  int d_;
  DType dtype_;
};

}  // namespace engram
