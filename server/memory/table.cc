#include "server/memory/table.h"

#include "engram/kernels/check.h"
#include "engram/kernels/row_math.h"

namespace engram {

EngramTable::EngramTable(const ModelFiles& files, int slot) {
  const TensorView t = files.Table(slot);
  data_ = t.data;
  rows_ = t.shape[0];
  d_ = static_cast<int>(t.shape[1]);
  dtype_ = t.dtype;
  if (dtype_ == DType::kF8E4M3) {
    auto s = files.TableScale(slot);
    ENGRAM_CHECK(s.has_value());  // ModelFiles::Open validated it
    scales_ = reinterpret_cast<const uint8_t*>(s->data);
  }
}

void EngramTable::Gather(const int64_t* ids, int64_t n, float* out) const {
  const uint64_t rb = row_bytes();
  const int scale_stride = d_ / kFp8BlockSize;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = ids[i];
    ENGRAM_CHECK_MSG(r >= 0 && r < rows_, "row %lld outside table of %lld rows",
                     static_cast<long long>(r), static_cast<long long>(rows_));
    const std::byte* src = data_ + static_cast<uint64_t>(r) * rb;
    const uint8_t* sc = scales_ != nullptr ? scales_ + r * scale_stride : nullptr;
    DequantRow(src, sc, dtype_, d_, out + i * d_);
  }
}

}  // namespace engram
