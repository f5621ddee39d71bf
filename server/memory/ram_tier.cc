// The RAM tier of the table store (DESIGN §3): the table is read from its file into anonymous
// process memory at start-up, packed the way Gather hands rows out (a row's d values, then its
// d/32 fp8 scale bytes), so a Gather is one memcpy per row.
//
// Loading reads the file with large sequential preads, not through the mmap, and drops each
// chunk from the page cache behind itself (POSIX_FADV_DONTNEED), so a table of half the RAM is
// not held twice. Holes of sparse files are skipped with SEEK_DATA/SEEK_HOLE: the anonymous
// memory already reads as zeros. A progress line (percent, GB/s, ETA) goes to stderr. Options:
// transparent huge pages (2 MiB aligned, MADV_HUGEPAGE: fewer TLB misses on random rows) and
// mlock (the table never swaps; fails early with the RLIMIT_MEMLOCK figure).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "server/memory/tiers.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kChunkBytes = 64ull << 20;
constexpr uint64_t kHugePage = 2ull << 20;
constexpr size_t kPrefetchAhead = 8;  // rows whose cache lines are requested ahead of the copy

uint64_t RoundUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Progress on stderr: rewritten in place on a terminal, otherwise one line per 10%. Tables
// under 64 MiB load before anyone could read it and stay quiet.
class LoadProgress {
 public:
  LoadProgress(std::string path, uint64_t total, bool enabled)
      : path_(std::move(path)),
        total_(total),
        tty_(::isatty(2) == 1),
        quiet_(!enabled || total < (64ull << 20)),
        start_(Clock::now()) {}

  // `n` more bytes are done; `read` says whether they were read (holes are skipped).
  void Advance(uint64_t n, bool read) {
    done_ += n;
    if (read) read_ += n;
    if (quiet_) return;
    const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    const int decile = static_cast<int>(done_ * 10 / total_);
    if (tty_ ? (done_ != total_ && secs - last_print_ < 0.2) : decile <= last_decile_) return;
    last_print_ = secs;
    last_decile_ = decile;
    const double gbps = secs > 0 ? static_cast<double>(read_) / 1e9 / secs : 0;
    const double eta = gbps > 0 ? static_cast<double>(total_ - done_) / 1e9 / gbps : 0;
    std::fprintf(stderr, "%sloading %s: %3d%%  %.2f of %.2f GB  %.2f GB/s  ETA %.0fs%s",
                 tty_ ? "\r" : "", path_.c_str(), static_cast<int>(done_ * 100 / total_),
                 static_cast<double>(done_) / 1e9, static_cast<double>(total_) / 1e9, gbps, eta,
                 tty_ && done_ != total_ ? "   " : "\n");
    std::fflush(stderr);
  }

 private:
  std::string path_;
  uint64_t total_;
  bool tty_;
  bool quiet_;
  Clock::time_point start_;
  uint64_t done_ = 0;
  uint64_t read_ = 0;
  double last_print_ = -1;
  int last_decile_ = -1;
};

// Anonymous memory for the table. MAP_NORESERVE: the size was checked against MemAvailable,
// and pages a sparse table never fills are never allocated.
struct AnonMemory {
  std::byte* base = nullptr;
  uint64_t bytes = 0;  // mapped length (a multiple of kHugePage with huge pages)

  AnonMemory() = default;
  AnonMemory(const AnonMemory&) = delete;
  AnonMemory& operator=(const AnonMemory&) = delete;
  ~AnonMemory() {
    if (base != nullptr) ::munmap(base, bytes);
  }
};

absl::Status MapAnon(const std::string& path, uint64_t need, bool huge, AnonMemory* m) {
  const uint64_t len = huge ? RoundUp(need, kHugePage) : need;
  const uint64_t map_len = huge ? len + kHugePage : len;
  void* p = ::mmap(nullptr, map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return absl::ResourceExhaustedError(StrCat(path, ": ram tier: cannot map ", FormatBytes(need),
                                               " of memory: ", std::strerror(errno)));
  auto* raw = static_cast<std::byte*>(p);
  if (!huge) {
    m->base = raw, m->bytes = len;
    return absl::OkStatus();
  }
  // Trim the mapping to a 2 MiB aligned window so every page can be a huge page.
  const uint64_t addr = reinterpret_cast<uint64_t>(raw);
  const uint64_t head = RoundUp(addr, kHugePage) - addr;
  if (head > 0) ::munmap(raw, head);
  if (map_len - head - len > 0) ::munmap(raw + head + len, map_len - head - len);
  m->base = raw + head, m->bytes = len;
  if (::madvise(m->base, len, MADV_HUGEPAGE) != 0)
    return absl::FailedPreconditionError(
        StrCat(path, ": ram tier: madvise(MADV_HUGEPAGE) failed (", std::strerror(errno),
               "); transparent huge pages are not available, run without huge pages"));
  return absl::OkStatus();
}

absl::Status Lock(const std::string& path, const AnonMemory& m) {
  if (::mlock(m.base, m.bytes) == 0) return absl::OkStatus();
  const int err = errno;
  rlimit rl{};
  ::getrlimit(RLIMIT_MEMLOCK, &rl);
  const std::string limit =
      rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited") : FormatBytes(rl.rlim_cur);
  return absl::ResourceExhaustedError(
      StrCat(path, ": ram tier: mlock of ", FormatBytes(m.bytes), " failed (", std::strerror(err),
             "); RLIMIT_MEMLOCK is ", limit,
             ": raise it (ulimit -l, LimitMEMLOCK= under systemd) or run without mlock"));
}

absl::Status ReadFull(int fd, const std::string& path, std::byte* buf, uint64_t n, uint64_t off) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      return absl::DataLossError(
          StrCat(path, ": read error at byte ", off, ": ", std::strerror(errno)));
    if (got == 0)
      return absl::DataLossError(StrCat(path, ": unexpected end of file at byte ", off,
                                        " (the file is shorter than its header says)"));
    buf += got, n -= static_cast<uint64_t>(got), off += static_cast<uint64_t>(got);
  }
  return absl::OkStatus();
}

// Reads the data extents of file bytes [begin, end), in chunks. With `direct` set, byte x lands
// at direct[x - begin]; otherwise each chunk is read into `staging` and handed to
// scatter(x - begin, bytes, n). Holes are skipped (counted as done).
template <typename Scatter>
absl::Status ReadRegion(int fd, const std::string& path, uint64_t begin, uint64_t end,
                        std::byte* direct, std::vector<std::byte>& staging, Scatter scatter,
                        LoadProgress& progress) {
  uint64_t pos = begin;
  while (pos < end) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) data = static_cast<off_t>(errno == ENXIO ? end : pos);  // ENXIO: all hole
    const uint64_t data_at = std::min(static_cast<uint64_t>(data), end);
    progress.Advance(data_at - pos, false);
    pos = data_at;
    if (pos >= end) break;
    const off_t hole = ::lseek(fd, static_cast<off_t>(pos), SEEK_HOLE);
    const uint64_t hole_at = hole < 0 ? end : std::min(static_cast<uint64_t>(hole), end);
    while (pos < hole_at) {
      const uint64_t n = std::min(kChunkBytes, hole_at - pos);
      std::byte* buf = direct != nullptr ? direct + (pos - begin) : staging.data();
      RETURN_IF_ERROR(ReadFull(fd, path, buf, n, pos));
      if (direct == nullptr) scatter(pos - begin, buf, n);
      ::posix_fadvise(fd, static_cast<off_t>(pos), static_cast<off_t>(n), POSIX_FADV_DONTNEED);
      progress.Advance(n, true);
      pos += n;
    }
  }
  return absl::OkStatus();
}

// Copies bytes [rel, rel + n) of a tensor with `width`-byte rows into packed rows of `pitch`
// bytes, starting `col` bytes into each row.
void ScatterRows(std::byte* packed, uint64_t pitch, uint64_t col, uint64_t width, uint64_t rel,
                 const std::byte* src, uint64_t n) {
  while (n > 0) {
    const uint64_t row = rel / width, in_row = rel % width;
    const uint64_t take = std::min(n, width - in_row);
    std::memcpy(packed + row * pitch + col + in_row, src, take);
    src += take, rel += take, n -= take;
  }
}

class RamStore final : public TableStore {
 public:
  explicit RamStore(const TableLayout& l) { layout_ = l; }
  AnonMemory& memory() { return mem_; }
  std::string_view tier_name() const override { return "ram"; }
  const std::byte* resident_rows() const override { return mem_.base; }

  absl::Status Gather(std::span<const int64_t> ids, std::byte* dst) override {
    const uint64_t pb = layout_.packed_bytes;
    const std::byte* base = mem_.base;
    const size_t n = ids.size();
    for (size_t i = 0; i < n; ++i) {
      if (i + kPrefetchAhead < n) {
        const std::byte* ahead = base + static_cast<uint64_t>(ids[i + kPrefetchAhead]) * pb;
        for (uint64_t b = 0; b < pb; b += 64) __builtin_prefetch(ahead + b);
      }
      std::memcpy(dst + i * pb, base + static_cast<uint64_t>(ids[i]) * pb, pb);
    }
    stats_.rows_requested.fetch_add(n, std::memory_order_relaxed);
    stats_.rows_from_ram.fetch_add(n, std::memory_order_relaxed);
    stats_.bytes_from_ram.fetch_add(n * pb, std::memory_order_relaxed);
    return absl::OkStatus();
  }

 private:
  AnonMemory mem_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TableStore>> OpenRamStore(const TableSource& src,
                                                         const TableStoreOptions& opt) {
  const std::string& path = src.path();
  const TableLayout l = MakeLayout(*src.table);
  const uint64_t rows = static_cast<uint64_t>(l.rows), db = l.data_bytes, pb = l.packed_bytes;
  auto store = std::make_unique<RamStore>(l);
  AnonMemory& mem = store->memory();
  RETURN_IF_ERROR(MapAnon(path, rows * pb, opt.huge_pages, &mem));
  if (opt.mlock) RETURN_IF_ERROR(Lock(path, mem));  // before the long read: fail early

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  const uint64_t data_off = src.table->offset, scale_off = src.scale ? src.scale->offset : 0;
  const uint64_t sb = pb - db;
  ::posix_fadvise(fd, static_cast<off_t>(data_off), static_cast<off_t>(rows * db),
                  POSIX_FADV_SEQUENTIAL);
  LoadProgress progress(path, rows * pb, opt.progress);
  std::vector<std::byte> staging;
  if (sb > 0) staging.resize(kChunkBytes);
  auto data_scatter = [&](uint64_t rel, const std::byte* p, uint64_t n) {
    ScatterRows(mem.base, pb, 0, db, rel, p, n);
  };
  RETURN_IF_ERROR(ReadRegion(fd, path, data_off, data_off + rows * db, sb == 0 ? mem.base : nullptr,
                             staging, data_scatter, progress));
  if (sb > 0) {
    auto scale_scatter = [&](uint64_t rel, const std::byte* p, uint64_t n) {
      ScatterRows(mem.base, pb, db, sb, rel, p, n);
    };
    RETURN_IF_ERROR(ReadRegion(fd, path, scale_off, scale_off + rows * sb, nullptr, staging,
                               scale_scatter, progress));
  }
  // Read-only from here on: a stray write into the table faults instead of corrupting it.
  ::mprotect(mem.base, mem.bytes, PROT_READ);
  return std::unique_ptr<TableStore>(std::move(store));
}

}  // namespace engram
