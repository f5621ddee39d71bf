// The memory tables of a model directory as table-store tables (server/memory/table_store.h):
// the Engram slot tables by slot, and the free-memory check over them. Kept in model/ because
// it reads ModelFiles; the table store itself knows only safetensors files, so memory/ needs
// nothing of model/.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "server/memory/table_store.h"
#include "server/model/model_files.h"

namespace engram {

// Engram slot `slot`'s table (index into config().engram.layer_ids).
ModelTable EngramTable(const ModelFiles& files, int slot);

// Opens slot `slot`'s table with `opt`.
absl::StatusOr<std::unique_ptr<TableStore>> OpenTableStore(const ModelFiles& files, int slot,
                                                           const TableStoreOptions& opt);

// CheckTableStoresFit over every Engram table, with one options for all or one per slot.
absl::Status CheckTableStoresFit(const ModelFiles& files, const TableStoreOptions& opt);
absl::Status CheckTableStoresFit(const ModelFiles& files,
                                 const std::vector<TableStoreOptions>& per_slot);

}  // namespace engram
