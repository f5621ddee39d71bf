#include "server/model/model_tables.h"

namespace engram {

ModelTable EngramTable(const ModelFiles& files, int slot) {
  const int layer = files.config().engram.layer_ids[static_cast<size_t>(slot)];
  return {&files.TableFile(slot), TableTensorName(layer), TableScaleTensorName(layer)};
}

absl::StatusOr<std::unique_ptr<TableStore>> OpenTableStore(const ModelFiles& files, int slot,
                                                           const TableStoreOptions& opt) {
  return OpenTableStore(EngramTable(files, slot), opt);
}

absl::Status CheckTableStoresFit(const ModelFiles& files, const TableStoreOptions& opt) {
  return CheckTableStoresFit(
      files, std::vector<TableStoreOptions>(files.config().engram.layer_ids.size(), opt));
}

absl::Status CheckTableStoresFit(const ModelFiles& files,
                                 const std::vector<TableStoreOptions>& per_slot) {
  std::vector<std::pair<ModelTable, TableStoreOptions>> tables;
  for (size_t slot = 0; slot < files.config().engram.layer_ids.size(); ++slot)
    tables.emplace_back(EngramTable(files, static_cast<int>(slot)), per_slot.at(slot));
  return CheckTableStoresFit(tables);
}

}  // namespace engram
