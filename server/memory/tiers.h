// Internals shared by the table store's tiers (table_store.cc dispatches, ram_tier.cc and
// ssd_tier.cc construct): where a table lives in its file, the memory check every tier passes
// before anything is loaded, and the tier constructors. Not a public interface: the engine opens
// stores through table_store.h.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/memory/table_store.h"

namespace engram {

// A validated table inside a parsed safetensors file.
struct TableSource {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* table = nullptr;  // [rows, d]
  const TensorInfo* scale = nullptr;  // fp8: [rows, d/32] U8; otherwise null
  // Set when the store opened the file itself (OpenTableStoreFromFile): keeps `file` alive for
  // tiers that read through its mapping.
  std::shared_ptr<const SafetensorsFile> owned;

  const std::string& path() const { return file->path(); }
};

TableLayout MakeLayout(const TensorInfo& table);

// Finds and validates `tensor` (and, for fp8, `scale_tensor`) in `file`; errors name both.
absl::StatusOr<TableSource> FindTable(const SafetensorsFile& file, std::string_view tensor,
                                      std::string_view scale_tensor);

// MemAvailable of /proc/meminfo in bytes: what can be allocated without swapping.
absl::StatusOr<uint64_t> MemAvailableBytes();
// Bytes of process memory the tier of `opt` needs for `src` (the RAM copy, the SSD tier's cache
// and fp8 scales; 0 for kMmap).
uint64_t TierMemoryBytes(const TableSource& src, const TableStoreOptions& opt);
// Fails with a message naming the file, the tier, the bytes needed and the bytes available when
// the tier's memory does not fit in `available` (MemAvailableBytes() when not given).
absl::Status CheckTierResources(const TableSource& src, const TableStoreOptions& opt,
                                std::optional<uint64_t> available = std::nullopt);

// Tier constructors. They do not check resources (OpenTableStore does, first); tests call them
// directly to reach configurations the check refuses on this machine (a 275 GB sparse table).
// The RAM tier skips holes of sparse files: its anonymous memory already reads as zeros.
absl::StatusOr<std::unique_ptr<TableStore>> OpenRamStore(const TableSource& src,
                                                         const TableStoreOptions& opt);
absl::StatusOr<std::unique_ptr<TableStore>> OpenSsdStore(const TableSource& src,
                                                         const TableStoreOptions& opt);

// Human-readable byte count with the exact figure: "1.50 GB (1500000000 bytes)".
std::string FormatBytes(uint64_t bytes);

}  // namespace engram
