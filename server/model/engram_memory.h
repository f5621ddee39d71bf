// The Engram memory layers of one model (DESIGN §2.1), as a memory-layer module beside
// product_key_layer.h: it owns the hashing, the compressed-id table, the tables and their
// prefetcher, how each table's rows reach the backend, the step buffers of its layers and the
// per-sequence state incremental decoding needs (the conv ring of SequenceState). Rows depend
// only on token ids, so the step's lookup starts before the embedding (Submit) and the forward
// pass cuts a segment before each Engram block, where it waits for that block's rows (Stage).
// Not thread-safe: the engine thread drives it; the prefetcher's stats may be read anywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/memory/hashing.h"
#include "server/memory/prefetcher.h"
#include "server/memory/table_store.h"
#include "server/model/model_files.h"
#include "server/model/sequence_state.h"
#include "server/model/upload_blob.h"
#include "server/model/weights.h"

namespace engram {

// One sequence's share of a step, as the module sees it.
struct EngramStepSeq {
  const SequenceState* state = nullptr;
  int32_t row_begin = 0, row_end = 0;  // its rows in the step
};

class EngramMemory {
 public:
  // Distinct rows per FetchPackedRows call: a backend's row cache sizes its per-call state by
  // it, and bigger steps fetch in several calls.
  static constexpr int kMaxRowsPerFetch = 1 << 16;

  // A slot's rows staged in backend memory for its layer.
  struct Staged {
    float* emb = nullptr;  // [rows][(N-1)*E] floats, filled by DequantRows when `dequant`
    const float* host_emb = nullptr;  // the prefetcher's floats (host-memory backends, direct)
    bool dequant = false;
    int64_t refs = 0;  // (token, head) rows to dequantise
  };

  // `stores` per slot, already checked against free memory with every other memory table
  // (empty when Engram is skipped or the model has none: the module then has no slots).
  static absl::StatusOr<std::unique_ptr<EngramMemory>> Open(
      const ModelFiles& files, const Weights& weights, Backend* backend,
      std::vector<int64_t> compress, std::vector<std::unique_ptr<TableStore>> stores, bool prefetch,
      std::optional<EngramRowPath> row_path, uint64_t device_cache_bytes);

  int num_slots() const { return prefetcher_->num_slots(); }
  bool on() const { return num_slots() > 0; }
  const NgramHasher& hasher() const { return hasher_; }
  const std::vector<int64_t>& compress() const { return compress_; }
  int64_t compressed_pad() const { return compressed_pad_; }
  const EngramPrefetcher& prefetcher() const { return *prefetcher_; }
  const BackendTable* backend_table(int slot) const {
    return slot < static_cast<int>(backend_tables_.size()) ? backend_tables_[slot].get() : nullptr;
  }

  // Bytes of the step buffers for steps of `rows` rows: the one source for ReserveStep and the
  // engine's activation estimate. `fixed_address`: step graphs are on (a host-memory backend
  // then copies the prefetcher's floats too); `want_y`: the conv output kept for a dump.
  uint64_t StepBytes(int64_t rows, bool fixed_address, bool want_y) const;
  // Grows the step buffers; true when one moved.
  bool ReserveStep(int64_t rows, bool fixed_address, bool want_y);
  // Bytes of the step metadata (tap and store pointers) for steps of `rows` rows.
  uint64_t MetaBytes(int64_t rows) const;
  // The per-sequence state a sequence needs to continue (the conv ring), in bytes; the engine
  // pools it beside the KV cache and counts it when the cache is sized.
  uint64_t SequenceStateBytes() const;
  // Sizes a sequence's conv ring (a no-op when the engine's pool already did).
  void ReserveSequenceState(SequenceState& s) const;

  // Appends the step's tap and store pointers to `blob` (the conv's earlier inputs per row:
  // this step's z, the sequence's ring, or none) and, once uploaded, binds them.
  void AddStepMeta(std::span<const EngramStepSeq> seqs, int64_t rows, UploadBlob& blob);
  void BindStepMeta(const char* base);

  // The step's lookup starts: it runs while the blocks before the first Engram layer compute.
  EngramPrefetcher::Ticket Submit(StepTokens tokens) {
    return prefetcher_->Submit(std::move(tokens));
  }
  // Waits for slot's rows and copies (or fetches) them into backend memory for `rows` padded
  // rows; the copies are not ops, so they happen before a segment's graph launch.
  absl::StatusOr<Staged> Stage(EngramPrefetcher::Ticket t, int slot, int64_t rows,
                               bool fixed_address);
  // The layer of `slot` over `rows` rows (DESIGN §2.1 steps 5-8): h += conv(gated value).
  void Issue(int slot, const Staged& staged, int64_t rows, float* h, bool want_y);
  StepRows Finish(EngramPrefetcher::Ticket t) { return prefetcher_->Finish(t); }
  // Keeps the last N-1 compressed ids of each sequence (step order matches `rows.compressed`).
  void Advance(SequenceState& s, const std::vector<int64_t>& compressed) const;

  // What Issue left for dumps: the conv output (with want_y) and the gates, [rows][M].
  const float* conv_output() const { return y_.get<float>(); }
  const float* gates() const { return gates_.get<float>(); }

 private:
  EngramMemory(const ModelFiles& files, const Weights& w, Backend* b);
  // Picks each slot's row path and opens the backend tables of the kIds ones.
  absl::Status SetUpRowPaths(const std::vector<std::unique_ptr<TableStore>>& stores,
                             std::optional<EngramRowPath> row_path, uint64_t device_cache_bytes,
                             std::vector<EngramRowPath>* paths);
  // Whether slot's floats need a buffer of their own (not read in place from the prefetcher).
  bool OwnsEmbeddings(int slot, bool fixed_address) const;
  // `bytes` zero bytes on the host, for the padding rows of uploads.
  const void* Zeros(size_t bytes);

  const ModelConfig& c_;
  const Weights& w_;
  Backend* b_;
  NgramHasher hasher_;
  std::vector<int64_t> compress_;
  int64_t compressed_pad_ = 0;
  // Declared after compress_ (which it reads): destroyed, and its thread joined, first.
  std::unique_ptr<EngramPrefetcher> prefetcher_;
  std::vector<std::unique_ptr<BackendTable>> backend_tables_;  // per slot, kIds only
  // Per slot (an Upload's destination must not be in use since the last sync point, and
  // distinct buffers let every layer's rows copy while layers compute): the rows as floats, the
  // packed distinct rows, their ids and the (token, head) -> row map.
  std::vector<BackendBuffer> emb_, packed_, row_ids_, ref_;
  BackendBuffer value_, keys_, gates_, gated_, z_, y_;
  std::vector<size_t> meta_taps_, meta_store_;  // offsets in the step's blob, per slot
  std::vector<const float* const*> taps_;       // per slot: [rows][w-1]
  std::vector<float* const*> z_store_;          // per slot: [rows]
  std::vector<char> zeros_;
};

}  // namespace engram
