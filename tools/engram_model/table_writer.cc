// Streaming generation of Engram tables (see table_writer.h). Pipeline: while the main thread
// writes chunk i, worker threads fill chunk i+1; each worker handles whole blocks of rows, and
// each block has its own random stream, so the output is identical for any thread count.
#include "tools/engram_model/table_writer.h"
#include "server/util/str_cat.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "server/model/model_files.h"
#include "server/util/safetensors.h"
#include "server/util/status_macros.h"
#include "tools/engram_model/model_stats.h"
#include "tools/engram_model/prng.h"
#include "tools/engram_model/weights_gen.h"

namespace engram::tool {
namespace {

constexpr uint64_t kTableStream = 0x7461626c65ull;     // "table"
constexpr uint64_t kValuesStream = 0x76616c756573ull;  // "values"
constexpr uint64_t kChunkBytes = 64ull << 20;

using Clock = std::chrono::steady_clock;

// Progress on stderr: rewritten in place on a terminal, otherwise one line per 10%.
class Progress {
 public:
  // Small tables finish before anyone would read a progress line: those stay quiet.
  explicit Progress(uint64_t total)
      : total_(total),
        tty_(::isatty(2) == 1),
        quiet_(total < (64ull << 20)),
        start_(Clock::now()) {}

  void Update(uint64_t done) {
    if (quiet_ || last_done_ == total_) return;  // 100% is printed once
    const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    const int decile = total_ ? static_cast<int>(done * 10 / total_) : 10;
    if (tty_) {
      if (done != total_ && secs - last_print_ < 0.2) return;
    } else if (decile <= last_decile_) {
      return;
    }
    last_print_ = secs;
    last_done_ = done;
    last_decile_ = decile;
    const double gbps = secs > 0 ? static_cast<double>(done) / 1e9 / secs : 0;
    const double eta = gbps > 0 ? static_cast<double>(total_ - done) / 1e9 / gbps : 0;
    std::fprintf(stderr, "%swriting tables: %3d%%  %.2f of %.2f GB  %.2f GB/s  ETA %.0fs%s",
                 tty_ ? "\r" : "", total_ ? static_cast<int>(done * 100 / total_) : 100,
                 static_cast<double>(done) / 1e9, static_cast<double>(total_) / 1e9, gbps, eta,
                 tty_ ? "   " : "\n");
    if (tty_ && done == total_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

  double Seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  uint64_t total_;
  bool tty_;
  bool quiet_;
  Clock::time_point start_;
  double last_print_ = -1;
  int last_decile_ = -1;
  uint64_t last_done_ = UINT64_MAX;
};

// One memory table to write: its random stream is (stream, id).
struct LayerTable {
  uint64_t stream;
  uint64_t id;
  int64_t rows;
  int64_t d;
  DType dtype;
  std::string file;
  std::vector<ExpectedTensor> tensors;
};

// Fills rows [first, first + count) (a whole number of blocks, or the table's tail) into
// `data` (row-major, dtype bytes) and, for fp8, `scales` (d/32 bytes per row).
void FillRows(const LayerTable& t, uint64_t seed, int64_t first, int64_t count, std::byte* data,
              uint8_t* scales) {
  std::vector<float> row(static_cast<size_t>(t.d));
  const auto esize = static_cast<size_t>(t.dtype == DType::kF8E4M3 ? 1 : DTypeSize(t.dtype));
  for (int64_t b = first; b < first + count; b += kTableBlockRows) {
    Rng rng(StreamSeed(seed, t.stream, t.id, static_cast<uint64_t>(b / kTableBlockRows)));
    const int64_t end = std::min(b + kTableBlockRows, first + count);
    for (int64_t r = b; r < end; ++r) {
      for (float& v : row) v = rng.Normal() * kTableStddev;
      std::byte* out = data + static_cast<size_t>(r - first) * static_cast<size_t>(t.d) * esize;
      switch (t.dtype) {
        case DType::kF32:
          std::memcpy(out, row.data(), row.size() * 4);
          break;
        case DType::kBF16:
        case DType::kF16:
          for (size_t i = 0; i < row.size(); ++i) {
            const uint16_t h = t.dtype == DType::kBF16 ? FloatToBf16(row[i]) : FloatToF16(row[i]);
            std::memcpy(out + 2 * i, &h, 2);
          }
          break;
        default: {  // fp8
          uint8_t* s =
              scales + static_cast<size_t>(r - first) * static_cast<size_t>(t.d / kFp8BlockSize);
          for (int64_t g = 0; g < t.d / kFp8BlockSize; ++g)
            s[g] = QuantizeFp8Block(row.data() + g * kFp8BlockSize,
                                    reinterpret_cast<uint8_t*>(out) + g * kFp8BlockSize);
        }
      }
    }
  }
}

// Fills a chunk with `threads` workers, each taking whole blocks.
void FillChunk(const LayerTable& t, uint64_t seed, int64_t first, int64_t count, std::byte* data,
               uint8_t* scales, int threads) {
  const int64_t blocks = (count + kTableBlockRows - 1) / kTableBlockRows;
  const int64_t per = (blocks + threads - 1) / threads;
  std::vector<std::thread> pool;
  const size_t row_bytes =
      static_cast<size_t>(t.d * (t.dtype == DType::kF8E4M3 ? 1 : DTypeSize(t.dtype)));
  for (int64_t b0 = 0; b0 < blocks; b0 += per) {
    const int64_t r0 = b0 * kTableBlockRows;
    const int64_t n = std::min(per * kTableBlockRows, count - r0);
    pool.emplace_back(FillRows, std::cref(t), seed, first + r0, n,
                      data + static_cast<size_t>(r0) * row_bytes,
                      scales ? scales + static_cast<size_t>(r0 * (t.d / kFp8BlockSize)) : nullptr);
  }
  for (auto& th : pool) th.join();
}

}  // namespace

uint8_t QuantizeFp8Block(const float* x, uint8_t* out) {
  float amax = 0;
  for (int i = 0; i < kFp8BlockSize; ++i) amax = std::max(amax, std::fabs(x[i]));
  int e = -127;
  if (amax > 0) {
    int k = 0;
    const float m = std::frexp(amax / 448.0f, &k);  // amax/448 = m * 2^k, m in [0.5, 1)
    e = m == 0.5f ? k - 1 : k;                      // smallest e with 2^e >= amax/448
    e = std::clamp(e, -127, 126);
  }
  // e <= 120 for any finite float amax, so 2^-e is a normal float and scaling by it is exact.
  const float inv_scale = BitsToFloat(static_cast<uint32_t>(127 - e) << 23);
  for (int i = 0; i < kFp8BlockSize; ++i) out[i] = FloatToFp8E4M3(x[i] * inv_scale);
  return static_cast<uint8_t>(e + 127);
}

absl::Status WriteEngramTables(const std::string& dir, const ModelConfig& c, uint64_t seed) {
  const EngramConfig& e = c.engram;
  const uint64_t total = TotalTableBytes(c);
  Progress progress(total);
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  uint64_t done = 0;
  std::vector<LayerTable> tables;
  for (int layer : e.layer_ids)
    tables.push_back({kTableStream, static_cast<uint64_t>(layer), TableRows(c, layer),
                      e.row_width(), e.table_dtype, e.table_files.at(layer),
                      ExpectedTableTensors(c, layer)});
  const ProductKeyConfig& pk = c.product_key;
  for (const auto& [key, file] : pk.table_files)
    tables.push_back({kValuesStream, HashName(key), pk.rows(), pk.v_dim, pk.table_dtype, file,
                      ExpectedProductKeyTableTensors(c, key)});
  for (const LayerTable& t : tables) {
    const bool fp8 = t.dtype == DType::kF8E4M3;
    const auto row_bytes = static_cast<size_t>(t.d * (fp8 ? 1 : DTypeSize(t.dtype)));
    SafetensorsWriter w;
    w.SetMetadata("format", "pt");
    for (const auto& x : t.tensors) w.Declare(x.name, x.dtypes[0], x.shape);
    RETURN_IF_ERROR(w.Open(dir + "/" + t.file));
    // fp8 scales follow the whole table in the file; they are 1/32 of the table's size and
    // are kept in memory until the table bytes are out.
    std::vector<uint8_t> scales(fp8 ? static_cast<size_t>(t.rows * (t.d / kFp8BlockSize)) : 0);
    int64_t chunk_rows = static_cast<int64_t>(kChunkBytes / row_bytes);
    chunk_rows = std::max<int64_t>(kTableBlockRows, chunk_rows / kTableBlockRows * kTableBlockRows);
    std::vector<std::byte> bufs[2];
    for (auto& b : bufs) b.resize(static_cast<size_t>(std::min(chunk_rows, t.rows)) * row_bytes);
    auto scales_at = [&](int64_t r) {
      return fp8 ? scales.data() + static_cast<size_t>(r * (t.d / kFp8BlockSize)) : nullptr;
    };
    FillChunk(t, seed, 0, std::min(chunk_rows, t.rows), bufs[0].data(), scales_at(0), threads);
    int cur = 0;
    for (int64_t first = 0; first < t.rows; first += chunk_rows) {
      const int64_t n = std::min(chunk_rows, t.rows - first);
      const int64_t next = first + chunk_rows;
      std::thread filler;
      if (next < t.rows) {
        filler =
            std::thread(FillChunk, std::cref(t), seed, next, std::min(chunk_rows, t.rows - next),
                        bufs[1 - cur].data(), scales_at(next), threads);
      }
      absl::Status st = w.Append(bufs[cur].data(), static_cast<uint64_t>(n) * row_bytes);
      if (filler.joinable()) filler.join();
      RETURN_IF_ERROR(st);
      done += static_cast<uint64_t>(n) * row_bytes;
      progress.Update(done);
      cur = 1 - cur;
    }
    if (fp8) {
      RETURN_IF_ERROR(w.Append(scales.data(), scales.size()));
      done += scales.size();
      progress.Update(done);
    }
    RETURN_IF_ERROR(w.Close());
  }
  if (total > 0) progress.Update(total);
  const double secs = progress.Seconds();
  std::printf("  wrote %s of memory tables in %.1f s (%.2f GB/s)\n", HumanBytes(total).c_str(),
              secs, secs > 0 ? static_cast<double>(total) / 1e9 / secs : 0.0);
  return absl::OkStatus();
}

}  // namespace engram::tool
