// The model: a Llama-family decoder with Engram modules (DESIGN §2), run over a Backend.
// One Forward call runs a whole step: any number of sequences, each contributing a prefill chunk
// or a single decode token at its own position. Engram rows come from the prefetcher
// (server/memory/prefetcher.h): Forward submits the step's tokens first, and waits for a layer's
// rows only right before that Engram layer. Not thread-safe: one engine thread calls Forward.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/memory/hashing.h"
#include "server/memory/prefetcher.h"
#include "server/memory/table_store.h"
#include "server/model/kv_cache.h"
#include "server/model/model_files.h"
#include "server/model/sequence_state.h"
#include "server/model/weights.h"

namespace engram {

struct StepEntry {
  SequenceState* state = nullptr;
  std::span<const int32_t> tokens;  // new tokens of this step (prefill chunk or one decode token)
  bool all_logits = false;          // logits for every new token, else only for the last
};

// Where the Engram tables live and whether lookups overlap the forward pass.
struct EngramMemoryOptions {
  TableStoreOptions store;
  // Per Engram layer (the model's layer id) overrides of `store`.
  std::map<int, TableStoreOptions> per_layer;
  const TableStoreOptions& ForLayer(int layer) const {
    auto it = per_layer.find(layer);
    return it == per_layer.end() ? store : it->second;
  }
  bool prefetch = true;  // false: look rows up synchronously inside each Engram layer
  // How each table's rows reach the backend (prefetcher.h's EngramRowPath). Unset (auto): on a
  // backend with its own memory (a GPU), kIds (the backend reads the pinned table, zero-copy or
  // through its hot-row cache) for tables in RAM and kPacked (the CPU gathers, one upload,
  // dequantised on the device) for the others; kEmbeddings on host-memory backends.
  std::optional<EngramRowPath> row_path;
  uint64_t device_cache_bytes = 0;  // kIds: the backend's hot-row cache per table (0: none)
  // false: run the backbone alone, skipping every Engram module (the dense baseline of the
  // offload benchmark); no table is opened.
  bool enabled = true;
};

// Optional taps for tools and tests; all pointers may be null.
struct ForwardDump {
  int engram_layer = -1;                        // block index whose Engram input/output to capture
  std::vector<float>* engram_input = nullptr;   // [rows][M][D]
  std::vector<float>* engram_output = nullptr;  // [rows][M][D]
  std::vector<std::vector<float>>* gates = nullptr;  // [slot][rows * M]
};

struct ForwardOutput {
  std::vector<float> logits;  // [logit_rows][vocab] (empty when Forward kept them on the backend)
  // The same logits in the backend's memory, valid until the next Forward.
  const float* backend_logits = nullptr;
  std::vector<int32_t> first_row;  // per entry: its first row in `logits`; entry i has
                                   // first_row[i+1] - first_row[i] rows (size entries + 1)
};

class Model {
 public:
  // `compress` maps raw token ids to compressed ids (size vocab_size).
  static absl::StatusOr<std::unique_ptr<Model>> Load(std::unique_ptr<ModelFiles> files,
                                                     std::vector<int64_t> compress,
                                                     Backend* backend,
                                                     const EngramMemoryOptions& memory = {});

  const ModelConfig& config() const { return files_->config(); }
  const ModelFiles& files() const { return *files_; }
  const NgramHasher& hasher() const { return hasher_; }
  const std::vector<int64_t>& compress() const { return compress_; }
  int64_t compressed_pad() const { return compressed_pad_; }
  const EngramPrefetcher& prefetcher() const { return *prefetcher_; }
  // The backend's handle of slot's table when its rows take the kIds path, else nullptr.
  const BackendTable* backend_table(int slot) const {
    return slot < static_cast<int>(backend_tables_.size()) ? backend_tables_[slot].get() : nullptr;
  }

  // What hashing the step needs, copied from the states (their compressed tails) and tokens.
  StepTokens CollectStepTokens(std::span<const StepEntry> step) const;

  // Runs the step. Each state must have KV blocks for num_cached + tokens.size() positions
  // (KvCache::Reserve); on success every state advances by its token count. On an error after
  // validation (a table read failing) the states do not advance but their KV and Engram history
  // may hold part of this step: such sequences must start over (ResetState), as the engine's
  // failed steps do.
  // With download_logits false the logits stay in backend memory (out->backend_logits) and the
  // step ends without a sync point: the caller samples there (Backend::Sample).
  absl::Status Forward(std::span<const StepEntry> step, KvCache& kv, ForwardOutput* out,
                       const ForwardDump* dump = nullptr, bool download_logits = true);

  // Clears the Engram state of a sequence (the KV blocks are the cache's business).
  void ResetState(SequenceState& s) const;

  Backend* backend() const { return backend_; }

 private:
  // Backend addresses of this step's metadata and activations, valid during one Forward.
  struct StepPointers {
    int64_t rows = 0;
    const int32_t* ids = nullptr;
    const int64_t* pos = nullptr;
    const int32_t* logit_rows = nullptr;
    AttentionBatch attention;
    std::vector<const float* const*> taps;  // per slot: [rows][w-1]
    std::vector<float* const*> z_store;     // per slot: [rows]
  };
  // Grow-only step buffers in the backend's memory.
  struct StepBuffers {
    BackendBuffer meta, x, h, xn, q, k, v, att, o, g, u, logits;
    // Per Engram layer (an Upload's destination must not be in use since the last sync point,
    // and distinct buffers let every layer's rows copy while layers compute): the rows as
    // floats, the packed distinct rows, their ids and the (token, head) -> row map.
    std::vector<BackendBuffer> emb, packed, row_ids, ref;
    BackendBuffer value, keys, gates, gated, z, y;
  };

  // Distinct rows per FetchPackedRows call: a backend's row cache sizes its per-call state by
  // it, and bigger steps fetch in several calls.
  static constexpr int kMaxRowsPerFetch = 1 << 16;

  Model(std::unique_ptr<ModelFiles> files, Backend* backend);
  void ReserveStepBuffers(int64_t rows, int64_t logit_rows, bool want_y);
  // Packs ids, positions, the paged layout and every Engram layer's tap and store pointers
  // into one blob and uploads it with a single copy.
  void UploadStepMeta(std::span<const StepEntry> step, const std::vector<int32_t>& row_begin,
                      const std::vector<int32_t>& logit_rows, int block_table_stride,
                      int64_t max_context);
  absl::Status RunEngram(int slot, EngramPrefetcher::Ticket ticket, const ForwardDump* dump);
  // The slot's rows as floats [T][(N-1)*E] in backend memory, by the slot's path.
  const float* EngramRowsOnBackend(int slot, const SlotRows& rows);
  // Picks each slot's row path and opens the backend tables of the kIds ones.
  absl::Status SetUpRowPaths(const EngramMemoryOptions& memory,
                             const std::vector<std::unique_ptr<TableStore>>& stores,
                             std::vector<EngramRowPath>* paths);
  void AdvanceStates(std::span<const StepEntry> step, const StepRows& rows);
  std::unique_ptr<ModelFiles> files_;
  Backend* backend_;
  Weights weights_;
  NgramHasher hasher_;
  std::vector<int64_t> compress_;
  int64_t compressed_pad_ = 0;
  bool engram_on_ = true;
  // Declared after compress_ (which it reads): destroyed, and its thread joined, first.
  std::unique_ptr<EngramPrefetcher> prefetcher_;
  std::vector<std::unique_ptr<BackendTable>> backend_tables_;  // per slot, kIds only
  const float* inv_freq_ = nullptr;                            // in the backend's memory
  std::vector<float> inv_freq_host_;
  StepBuffers buf_;
  StepPointers ptr_;
};

}  // namespace engram
