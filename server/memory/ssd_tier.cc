// The SSD tier of the table store (DESIGN §3): for tables larger than RAM, rows are read with
// pread from the file, which is never loaded. The store has its own descriptor with readahead
// off (POSIX_FADV_RANDOM: a 64-byte row must not pull in 128 KiB), optionally O_DIRECT so the
// page cache is bypassed altogether. fp8 scales (1/33 of an fp8 table) are held in RAM.
//
// A Gather first serves what it can from the RAM row cache (row_cache.h), then sorts the misses
// by row and coalesces them into runs: duplicates and rows less than a page apart share one
// read of at most 1 MiB. Runs are read by up to io_threads threads at once, since an SSD
// answers many requests in flight far faster than one at a time. The rows read are then
// inserted into the cache.
//
// Faults: a failed or short read (an I/O error, or the file truncated after start-up) fails
// that Gather with absl::DataLossError naming the file, the tensor and the row; nothing read by
// it enters the cache, and the next Gather starts afresh, so the store keeps serving.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "engram/kernels/thread_pool.h"
#include "server/memory/row_cache.h"
#include "server/memory/tiers.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

constexpr uint64_t kMaxRunBytes = 1ull << 20;  // one read covers at most this
constexpr uint64_t kMaxGapBytes = 4096;        // rows at most this far apart share a read
constexpr uint64_t kAlign = 4096;              // O_DIRECT offset, length and buffer alignment
constexpr int64_t kRunsPerThread = 4;          // fewer runs than this per thread: fewer threads

struct AlignedFree {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{kAlign}); }
};
using Bounce = std::unique_ptr<std::byte[], AlignedFree>;

class SsdStore final : public TableStore {
 public:
  struct Miss {
    int64_t id;
    uint64_t index;  // position in the Gather's ids
  };
  struct Run {
    size_t first, last;   // misses_[first, last)
    uint64_t begin, end;  // file bytes the rows occupy
  };

  SsdStore(const TableSource& src, const TableStoreOptions& opt, int fd)
      : path_(src.path()),
        tensor_(src.table->name),
        fd_(fd),
        direct_(opt.direct_io),
        data_off_(src.table->offset) {
    layout_ = MakeLayout(*src.table);
    const int threads = std::max(1, opt.io_threads);
    if (threads > 1) pool_ = std::make_unique<ThreadPool>(threads);
    for (int i = 0; i < threads; ++i)
      bounce_.emplace_back(new (std::align_val_t{kAlign}) std::byte[kMaxRunBytes + 2 * kAlign]);
    if (opt.cache_bytes > 0)
      cache_ = std::make_unique<RowCache>(opt.cache_bytes, layout_.packed_bytes, opt.cache_policy);
  }
  ~SsdStore() override { ::close(fd_); }

  std::vector<uint8_t>& scales() { return scales_; }
  std::string_view tier_name() const override { return "ssd"; }
  const RowCache* cache() const { return cache_.get(); }

  absl::Status Gather(std::span<const int64_t> ids, std::byte* dst) override {
    const uint64_t pb = layout_.packed_bytes;
    misses_.clear();
    uint64_t hits = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::byte* row = cache_ ? cache_->Lookup(ids[i]) : nullptr;
      if (row != nullptr) {
        std::memcpy(dst + i * pb, row, pb);
        ++hits;
      } else {
        misses_.push_back({ids[i], i});
      }
    }
    stats_.rows_requested.fetch_add(ids.size(), std::memory_order_relaxed);
    stats_.rows_from_cache.fetch_add(hits, std::memory_order_relaxed);
    stats_.bytes_from_cache.fetch_add(hits * pb, std::memory_order_relaxed);
    if (misses_.empty()) return absl::OkStatus();

    std::sort(misses_.begin(), misses_.end(),
              [](const Miss& a, const Miss& b) { return a.id < b.id; });
    BuildRuns();
    absl::Status st = ReadAllRuns(dst);
    if (!st.ok()) return st;
    stats_.rows_from_ssd.fetch_add(misses_.size(), std::memory_order_relaxed);
    stats_.bytes_from_ssd.fetch_add(misses_.size() * pb, std::memory_order_relaxed);
    if (cache_) {
      for (size_t k = 0; k < misses_.size(); ++k)
        if (k == 0 || misses_[k].id != misses_[k - 1].id)
          cache_->Insert(misses_[k].id, dst + misses_[k].index * pb);
    }
    return absl::OkStatus();
  }

 private:
  uint64_t Offset(int64_t id) const {
    return data_off_ + static_cast<uint64_t>(id) * layout_.data_bytes;
  }

  void BuildRuns() {
    const uint64_t db = layout_.data_bytes;
    runs_.clear();
    for (size_t k = 0; k < misses_.size();) {
      Run r{k, k + 1, Offset(misses_[k].id), Offset(misses_[k].id) + db};
      for (++k; k < misses_.size(); ++k) {
        const uint64_t at = Offset(misses_[k].id);  // >= r.begin: misses_ is sorted
        if (at > r.end + kMaxGapBytes || at + db - r.begin > kMaxRunBytes) break;
        r.end = std::max(r.end, at + db);
        r.last = k + 1;
      }
      runs_.push_back(r);
    }
  }

  absl::Status ReadAllRuns(std::byte* dst) {
    const auto n = static_cast<int64_t>(runs_.size());
    if (pool_ == nullptr || n < 2 * kRunsPerThread) return ReadRuns(0, n, bounce_[0].get(), dst);
    std::atomic<size_t> next_buffer{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    absl::Status first_error;
    pool_->ParallelFor(n, kRunsPerThread, [&](int64_t begin, int64_t end) {
      // ParallelFor makes at most pool size() calls, one per thread: each gets its own buffer.
      std::byte* bounce = bounce_[next_buffer.fetch_add(1) % bounce_.size()].get();
      for (int64_t r = begin; r < end && !failed.load(std::memory_order_relaxed); ++r) {
        absl::Status st = ReadRuns(r, r + 1, bounce, dst);
        if (!st.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.ok()) first_error = std::move(st);
          failed.store(true, std::memory_order_relaxed);
        }
      }
    });
    return first_error;
  }

  // Reads runs_[begin, end) through `bounce` and copies their rows into dst.
  absl::Status ReadRuns(int64_t begin, int64_t end, std::byte* bounce, std::byte* dst) {
    const uint64_t db = layout_.data_bytes, pb = layout_.packed_bytes, sb = pb - db;
    uint64_t reads = 0, read_bytes = 0;
    absl::Status st;
    for (int64_t r = begin; r < end && st.ok(); ++r) {
      const Run& run = runs_[static_cast<size_t>(r)];
      const uint64_t from = direct_ ? run.begin / kAlign * kAlign : run.begin;
      const uint64_t to = direct_ ? (run.end + kAlign - 1) / kAlign * kAlign : run.end;
      uint64_t got = 0;
      int err = 0;
      while (from + got < run.end) {
        const ssize_t n =
            ::pread(fd_, bounce + got, to - from - got, static_cast<off_t>(from + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          err = n < 0 ? errno : 0;
          break;
        }
        got += static_cast<uint64_t>(n);
        ++reads;
        if (direct_ && got % kAlign != 0) break;  // the end of the file: nothing more to read
      }
      read_bytes += got;
      if (from + got < run.end) {
        st = ReadError(run, from + got, err);
        break;
      }
      for (size_t k = run.first; k < run.last; ++k) {
        const Miss& m = misses_[k];
        std::byte* out = dst + m.index * pb;
        std::memcpy(out, bounce + (Offset(m.id) - from), db);
        if (sb > 0) std::memcpy(out + db, scales_.data() + static_cast<uint64_t>(m.id) * sb, sb);
      }
    }
    stats_.ssd_reads.fetch_add(reads, std::memory_order_relaxed);
    stats_.ssd_read_bytes.fetch_add(read_bytes, std::memory_order_relaxed);
    return st;
  }

  // The error for a run whose bytes from `avail` on could not be read.
  absl::Status ReadError(const Run& run, uint64_t avail, int err) const {
    size_t k = run.first;
    while (k + 1 < run.last && Offset(misses_[k].id) + layout_.data_bytes <= avail) ++k;
    const uint64_t at = Offset(misses_[k].id);
    const std::string why =
        err != 0 ? StrCat("read error: ", std::strerror(err))
                 : std::string(
                       "unexpected end of file: the file is shorter than at start-up "
                       "(truncated?)");
    return absl::DataLossError(StrCat(path_, ": ssd tier: cannot read row ", misses_[k].id,
                                      " of table '", tensor_, "' (file bytes ", at, " to ",
                                      at + layout_.data_bytes, "): ", why));
  }

  std::string path_;
  std::string tensor_;
  int fd_;
  bool direct_;
  uint64_t data_off_;
  std::vector<uint8_t> scales_;  // fp8: [rows * d/32]
  std::unique_ptr<RowCache> cache_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<Bounce> bounce_;  // one per thread
  std::vector<Miss> misses_;    // reused by every Gather
  std::vector<Run> runs_;
};

absl::Status ReadScales(const TableSource& src, std::vector<uint8_t>* out) {
  const std::string& path = src.path();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(StrCat(path, ": cannot open: ", std::strerror(errno)));
  out->resize(src.scale->nbytes);
  uint64_t done = 0;
  int err = 0;
  while (done < out->size()) {
    const ssize_t n = ::pread(fd, out->data() + done, out->size() - done,
                              static_cast<off_t>(src.scale->offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : 0;
      break;
    }
    done += static_cast<uint64_t>(n);
  }
  ::close(fd);
  if (done == out->size()) return absl::OkStatus();
  return absl::DataLossError(StrCat(path, ": cannot read the fp8 scales '", src.scale->name,
                                    "': ", err ? std::strerror(err) : "unexpected end of file"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TableStore>> OpenSsdStore(const TableSource& src,
                                                         const TableStoreOptions& opt) {
  const std::string& path = src.path();
  const TableLayout l = MakeLayout(*src.table);
  if (opt.cache_bytes > 0 && RowCache::CapacityRows(opt.cache_bytes, l.packed_bytes) == 0)
    return absl::InvalidArgumentError(StrCat(
        path, ": ssd tier: a row cache of ", opt.cache_bytes, " bytes holds less than one set (",
        RowCache::kDefaultWays, " rows of ", RowCache::BytesPerRow(l.packed_bytes), " bytes)"));
  if (l.data_bytes > kMaxRunBytes)
    return absl::InvalidArgumentError(StrCat(path, ": ssd tier: rows of ", l.data_bytes,
                                             " bytes are wider than one read (", kMaxRunBytes,
                                             ")"));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (opt.direct_io ? O_DIRECT : 0));
  if (fd < 0) {
    const int err = errno;
    if (opt.direct_io && err == EINVAL)
      return absl::FailedPreconditionError(StrCat(
          path, ": ssd tier: the file system does not support O_DIRECT; run without direct I/O"));
    return absl::NotFoundError(StrCat(path, ": cannot open: ", std::strerror(err)));
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  auto store = std::make_unique<SsdStore>(src, opt, fd);  // owns fd from here
  if (src.scale != nullptr) {
    absl::Status st = ReadScales(src, &store->scales());
    if (!st.ok()) return st;
  }
  return std::unique_ptr<TableStore>(std::move(store));
}

}  // namespace engram
