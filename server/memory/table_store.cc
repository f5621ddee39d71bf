// The table store's entry points (table_store.h): locating and validating a table in its file,
// the memory check every tier passes before anything is loaded, the dispatch to the tiers, and
// the kMmap tier itself (the direct path the other tiers are tested against).
#include "server/memory/table_store.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_format.h"
#include "engram/kernels/check.h"
#include "engram/kernels/row_math.h"
#include "server/memory/row_cache.h"
#include "server/memory/tiers.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

// The direct path: rows straight from the mmap'd safetensors file.
class MmapStore final : public TableStore {
 public:
  explicit MmapStore(const TableSource& src) : owned_(src.owned) {
    layout_ = MakeLayout(*src.table);
    data_ = src.file->data(*src.table);
    if (src.scale != nullptr) scales_ = src.file->data(*src.scale);
  }
  std::string_view tier_name() const override { return "mmap"; }

  absl::Status Gather(std::span<const int64_t> ids, std::byte* dst) override {
    const uint64_t db = layout_.data_bytes, pb = layout_.packed_bytes, sb = pb - db;
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto r = static_cast<uint64_t>(ids[i]);
      std::memcpy(dst + i * pb, data_ + r * db, db);
      if (sb > 0) std::memcpy(dst + i * pb + db, scales_ + r * sb, sb);
    }
    stats_.rows_requested.fetch_add(ids.size(), std::memory_order_relaxed);
    stats_.rows_from_ram.fetch_add(ids.size(), std::memory_order_relaxed);
    stats_.bytes_from_ram.fetch_add(ids.size() * pb, std::memory_order_relaxed);
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<const SafetensorsFile> owned_;  // null when ModelFiles owns the mapping
  const std::byte* data_ = nullptr;
  const std::byte* scales_ = nullptr;
};

absl::StatusOr<std::unique_ptr<TableStore>> OpenChecked(const TableSource& src,
                                                        const TableStoreOptions& opt) {
  RETURN_IF_ERROR(CheckTierResources(src, opt));
  switch (opt.tier) {
    case TableTier::kMmap:
      return std::unique_ptr<TableStore>(new MmapStore(src));
    case TableTier::kRam:
      return OpenRamStore(src, opt);
    case TableTier::kSsd:
      return OpenSsdStore(src, opt);
  }
  return absl::InvalidArgumentError("unknown table tier");
}

}  // namespace

TableLayout MakeLayout(const TensorInfo& table) {
  TableLayout l;
  l.rows = table.shape[0];
  l.d = static_cast<int>(table.shape[1]);
  l.dtype = table.dtype;
  l.data_bytes = static_cast<uint64_t>(l.d) * DTypeSize(l.dtype);
  l.packed_bytes = l.data_bytes + (l.dtype == DType::kF8E4M3 ? l.d / kFp8BlockSize : 0);
  return l;
}

std::string_view TableTierName(TableTier tier) {
  switch (tier) {
    case TableTier::kMmap:
      return "mmap";
    case TableTier::kRam:
      return "ram";
    case TableTier::kSsd:
      return "ssd";
  }
  return "?";
}

std::string FormatBytes(uint64_t bytes) {
  return absl::StrFormat("%.2f GB (%d bytes)", static_cast<double>(bytes) / 1e9, bytes);
}

absl::StatusOr<TableSource> FindTable(const SafetensorsFile& file, std::string_view tensor,
                                      std::string_view scale_tensor) {
  const std::string& path = file.path();
  TableSource src;
  src.file = &file;
  src.table = file.Find(tensor);
  if (src.table == nullptr)
    return absl::NotFoundError(StrCat(path, ": no table tensor '", tensor, "'"));
  const TensorInfo& t = *src.table;
  if (t.shape.size() != 2 || t.shape[0] <= 0 || t.shape[1] <= 0 ||
      t.shape[1] > std::numeric_limits<int>::max())
    return absl::InvalidArgumentError(
        StrCat(path, ": table '", tensor, "' has shape ", t.ShapeString(), ", expected [rows, d]"));
  if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16 &&
      t.dtype != DType::kF8E4M3)
    return absl::InvalidArgumentError(StrCat(path, ": table '", tensor, "' has dtype ",
                                             DTypeToSafetensors(t.dtype),
                                             ", expected F32, BF16, F16 or F8_E4M3"));
  if (t.dtype != DType::kF8E4M3) return src;
  if (t.shape[1] % kFp8BlockSize != 0)
    return absl::InvalidArgumentError(StrCat(path, ": fp8 table '", tensor, "' has width ",
                                             t.shape[1], ", not a multiple of ", kFp8BlockSize));
  src.scale = file.Find(scale_tensor);
  const std::vector<int64_t> want = {t.shape[0], t.shape[1] / kFp8BlockSize};
  if (src.scale == nullptr || src.scale->dtype != DType::kU8 || src.scale->shape != want)
    return absl::InvalidArgumentError(StrCat(path, ": fp8 table '", tensor,
                                             "' needs its scale tensor '", scale_tensor,
                                             "' as U8 [", want[0], ", ", want[1], "]"));
  return src;
}

absl::StatusOr<uint64_t> MemAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t value = 0;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;  // the unit is always kB
  }
  return absl::UnavailableError("/proc/meminfo: no MemAvailable line");
}

uint64_t TierMemoryBytes(const TableSource& src, const TableStoreOptions& opt) {
  const TableLayout l = MakeLayout(*src.table);
  const auto rows = static_cast<uint64_t>(l.rows);
  switch (opt.tier) {
    case TableTier::kMmap:
      return 0;
    case TableTier::kRam:
      return rows * l.packed_bytes;
    case TableTier::kSsd: {
      const uint64_t cache = RowCache::CapacityRows(opt.cache_bytes, l.packed_bytes) *
                             RowCache::BytesPerRow(l.packed_bytes);
      return cache + rows * (l.packed_bytes - l.data_bytes);
    }
  }
  return 0;
}

absl::Status CheckTierResources(const TableSource& src, const TableStoreOptions& opt,
                                std::optional<uint64_t> available) {
  const uint64_t need = TierMemoryBytes(src, opt);
  if (need == 0) return absl::OkStatus();
  if (!available.has_value()) {
    auto a = MemAvailableBytes();
    if (!a.ok()) return absl::OkStatus();  // no /proc: nothing to check against
    available = *a;
  }
  if (need <= *available) return absl::OkStatus();
  const std::string what = opt.tier == TableTier::kRam
                               ? "a copy of the table"
                               : "its row cache (--memory-cache-bytes) and fp8 scales";
  const std::string advice = opt.tier == TableTier::kRam
                                 ? "use the ssd tier (--memory-tier ssd) with a row cache"
                                 : "lower --memory-cache-bytes";
  return absl::ResourceExhaustedError(
      StrCat(src.path(), ": table '", src.table->name, "' on the ", TableTierName(opt.tier),
             " tier needs ", FormatBytes(need), " of memory for ", what, ", but only ",
             FormatBytes(*available), " is available (MemAvailable in /proc/meminfo); ", advice));
}

absl::Status CheckTableStoresFit(
    const std::vector<std::pair<ModelTable, TableStoreOptions>>& tables) {
  uint64_t need = 0;
  std::string names;
  for (const auto& [table, opt] : tables) {
    ASSIGN_OR_RETURN(const TableSource src,
                     FindTable(*table.file, table.tensor, table.scale_tensor));
    const uint64_t bytes = TierMemoryBytes(src, opt);
    need += bytes;
    if (bytes > 0)
      names += StrCat(names.empty() ? "" : ", ", src.path(), " (", TableTierName(opt.tier), ")");
  }
  auto available = MemAvailableBytes();
  if (need == 0 || !available.ok() || need <= *available) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      StrCat("the memory tables ", names, " need ", FormatBytes(need),
             " of memory together, but only ", FormatBytes(*available),
             " is available (MemAvailable in /proc/meminfo); put some on the ssd tier "
             "(--memory-tier) or shrink --memory-cache-bytes"));
}

absl::StatusOr<std::unique_ptr<TableStore>> OpenTableStore(const ModelTable& table,
                                                           const TableStoreOptions& opt) {
  ASSIGN_OR_RETURN(const TableSource src, FindTable(*table.file, table.tensor, table.scale_tensor));
  return OpenChecked(src, opt);
}

absl::StatusOr<std::unique_ptr<TableStore>> OpenTableStoreFromFile(const std::string& path,
                                                                   std::string_view tensor,
                                                                   std::string_view scale_tensor,
                                                                   const TableStoreOptions& opt) {
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
  std::shared_ptr<const SafetensorsFile> owned(std::move(file));
  ASSIGN_OR_RETURN(TableSource src, FindTable(*owned, tensor, scale_tensor));
  src.owned = std::move(owned);
  return OpenChecked(src, opt);
}

void DequantPackedRows(const TableLayout& l, const std::byte* packed, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const std::byte* row = packed + static_cast<uint64_t>(i) * l.packed_bytes;
    const auto* scales =
        l.dtype == DType::kF8E4M3 ? reinterpret_cast<const uint8_t*>(row + l.data_bytes) : nullptr;
    DequantRow(row, scales, l.dtype, l.d, out + i * l.d);
  }
}

}  // namespace engram
