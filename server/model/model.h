// The model: a Llama-family decoder with memory layers (DESIGN §2), run over a Backend.
// One Forward call runs a whole step: any number of sequences, each contributing a prefill chunk
// or a single decode token at its own position. Each memory kind is a module that owns its
// tables, step buffers and per-sequence state (engram_memory.h, product_key_layer.h); Forward
// loops over the blocks and cuts the step into segments where a module needs the host: before
// an Engram block (its rows come from the prefetcher, submitted first) and inside a product-key
// block whose rows the backend cannot read in place. Not thread-safe: one engine thread calls
// Forward.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engram/kernels/backend.h"
#include "server/memory/table_store.h"
#include "server/model/engram_memory.h"
#include "server/model/kv_cache.h"
#include "server/model/model_files.h"
#include "server/model/product_key_layer.h"
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
  // offload benchmark); no Engram table is opened. Product-key layers always run: their
  // blocks have no MLP to fall back on.
  bool enabled = true;
  // The product-key memory layers: how their rows reach the backend, and per values table
  // ("shared", or a layer) overrides. Its `store` is ignored: `store` is every table's default,
  // and a layer in `per_layer` that has a values table of its own names that table.
  ProductKeyMemoryOptions product_key;
};

// Step graphs (Backend::BeginGraph): a decode step (one token per sequence) is padded to the
// next captured batch size and its context to the next power of two, and replayed as recorded
// launches, one per Engram segment. The first step of a shape runs directly (it grows the
// backend's scratch buffers), the second records, later ones replay.
struct StepGraphOptions {
  enum class Mode { kAuto, kOn, kOff };
  // kAuto: on for backends with their own memory (a GPU) that have graphs; kOff is vLLM's
  // --enforce-eager; kOn on a host-memory backend runs the same path (tests compare it).
  Mode mode = Mode::kAuto;
  int max_batch = 256;  // decode steps of up to this many sequences use graphs
};

struct StepGraphStats {
  uint64_t recorded = 0;     // segment graphs recorded
  uint64_t graph_steps = 0;  // steps whose every segment ran as a graph launch
  uint64_t stale = 0;        // launches refused (a backend scratch buffer moved): re-recorded
};

// Optional taps for tools and tests; all pointers may be null.
struct ForwardDump {
  int engram_layer = -1;                        // block index whose Engram input/output to capture
  std::vector<float>* engram_input = nullptr;   // [rows][M][D]
  std::vector<float>* engram_output = nullptr;  // [rows][M][D]
  std::vector<std::vector<float>>* gates = nullptr;  // [slot][rows * M]
  // A product-key memory layer's block: its input h (the residual after attention), its
  // output o (added to h) and the value rows it chose per head, best first.
  int memory_layer = -1;
  std::vector<float>* memory_input = nullptr;      // [rows][D]
  std::vector<float>* memory_output = nullptr;     // [rows][D]
  std::vector<int64_t>* memory_indices = nullptr;  // [rows][heads][knn]
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
  const NgramHasher& hasher() const { return engram_->hasher(); }
  const std::vector<int64_t>& compress() const { return engram_->compress(); }
  int64_t compressed_pad() const { return engram_->compressed_pad(); }
  const EngramPrefetcher& prefetcher() const { return engram_->prefetcher(); }
  // The Engram layers (no slots when the model has none or they are skipped).
  const EngramMemory& engram() const { return *engram_; }
  // The product-key memory layers, or nullptr when the model has none.
  const ProductKeyMemory* product_key() const { return product_key_.get(); }
  // The backend's handle of slot's table when its rows take the kIds path, else nullptr.
  const BackendTable* backend_table(int slot) const { return engram_->backend_table(slot); }

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

  // INVALID_ARGUMENT for kOn on a backend without graphs or a max_batch below 1.
  absl::Status ConfigureStepGraphs(const StepGraphOptions& options);
  bool step_graphs_on() const { return graphs_on_; }
  // The batch sizes a decode step is padded to.
  const std::vector<int>& graph_batch_sizes() const { return graph_batches_; }
  // Safe from any thread (the metrics collector).
  StepGraphStats graph_stats() const {
    return {graph_recorded_.load(std::memory_order_relaxed),
            graph_steps_.load(std::memory_order_relaxed),
            graph_stale_.load(std::memory_order_relaxed)};
  }
  // Grows the step buffers for steps of up to `max_tokens` tokens and `max_logit_rows` logit
  // rows now, so that they never move later (a move drops every recorded graph). The engine
  // calls it with its token budget and its sequences per step.
  void ReserveStep(int64_t max_tokens, int64_t max_logit_rows);
  // Bytes of every step buffer (backbone, memory layers, metadata) for steps of up to
  // `max_tokens` tokens and `max_logit_rows` logit rows: what ReserveStep allocates, so the
  // engine's KV sizing counts exactly that.
  uint64_t StepBytes(int64_t max_tokens, int64_t max_logit_rows, int block_size) const;
  // Bytes of the memory-layer state one sequence carries between steps (Engram's conv ring;
  // product-key layers carry none), pooled by the engine beside the KV cache.
  uint64_t SequenceStateBytes() const { return engram_->SequenceStateBytes(); }
  // Gives a sequence its memory-layer state buffers now (Forward would, at its first step).
  void ReserveSequenceState(SequenceState& s) const { engram_->ReserveSequenceState(s); }

 private:
  // Backend addresses of this step's metadata and activations, valid during one Forward.
  struct StepPointers {
    int64_t rows = 0;
    const int32_t* ids = nullptr;
    const int64_t* pos = nullptr;
    const int32_t* logit_rows = nullptr;
    AttentionBatch attention;
  };
  // Grow-only step buffers in the backend's memory.
  struct StepBuffers {
    BackendBuffer meta, graph_meta, x, h, xn, q, k, v, att, o, g, u, logits;
  };

  // A graph step's padded shape; graphs are recorded per (batch, context).
  struct GraphShape {
    int batch = 0;
    int64_t context = 0;
    int stride = 0;  // block table entries per sequence: context / block size, rounded up
  };
  struct GraphSet {
    bool warm = false;  // a step of this shape ran directly: the backend's scratch has grown
    int failures = 0;   // recordings the backend refused; the shape stays direct after 3
    std::vector<std::unique_ptr<BackendGraph>> segments;
  };
  Model(std::unique_ptr<ModelFiles> files, Backend* backend);
  // False when nothing moved; true when a buffer was (re)allocated.
  bool ReserveStepBuffers(int64_t rows, int64_t logit_rows, bool want_y);
  // The backbone's step buffers by name with their bytes: ReserveStepBuffers reserves them and
  // StepBytes sums them. Static over `Self` so the const StepBytes needs no const_cast.
  template <typename Self, typename F>
  static void ForEachStepBuffer(Self& self, int64_t rows, int64_t logit_rows, F&& f);
  // Bytes of UploadStepMeta's blob for `seqs` sequences over `rows` rows with `stride` block
  // table entries each and `logit_rows` logit rows.
  uint64_t MetaBytes(int64_t seqs, int64_t rows, int64_t stride, int64_t logit_rows) const;
  // The graph metadata buffer: sized for the largest graph step at once.
  uint64_t GraphMetaBytes(int block_size) const;
  // Packs ids, positions, the paged layout and every Engram layer's tap and store pointers
  // into one blob and uploads it with a single copy. row_begin may describe more sequences
  // than `step` holds: the padding sequences of a graph step, one row each, which attend only
  // to the cache's pad block and have no Engram history.
  void UploadStepMeta(std::span<const StepEntry> step, const std::vector<int32_t>& row_begin,
                      const std::vector<int32_t>& logit_rows, int block_table_stride,
                      int64_t max_context, int32_t pad_block, BackendBuffer& dst);
  std::optional<GraphShape> GraphShapeFor(std::span<const StepEntry> step, const KvCache& kv,
                                          const ForwardDump* dump) const;
  // The graph set of `shape`, after dropping every graph when the KV cache or a step buffer is
  // not the one they were recorded with.
  GraphSet* GraphsFor(const GraphShape& shape, KvCache& kv);
  // Runs `ops` directly, or (set != nullptr) as segment `seg` of the shape's graphs, recording
  // it first when the shape is warm.
  void IssueSegment(GraphSet* set, size_t seg, bool* all_graphs, const std::function<void()>& ops);
  // Blocks [l0, l1): attention, then the MLP or the product-key memory replacing it. With
  // `stop_in_l1`, block l1's attention and its memory's chooser too: the segment ends where the
  // host fetches that memory's rows.
  void IssueLayers(int l0, int l1, KvCache& kv, bool stop_in_l1 = false,
                   const ForwardDump* dump = nullptr);
  void IssueAttention(int l, KvCache& kv);
  void IssueProductKeyChoose(int l, const ForwardDump* dump);
  void IssueProductKeyRead(int l, const ForwardDump* dump);
  // Final norm and LM head over the `logit_rows` gathered rows.
  void IssueHead(int64_t logit_rows);
  void AdvanceStates(std::span<const StepEntry> step, const StepRows& rows);
  std::unique_ptr<ModelFiles> files_;
  Backend* backend_;
  Weights weights_;
  std::unique_ptr<EngramMemory> engram_;
  std::unique_ptr<ProductKeyMemory> product_key_;
  const float* inv_freq_ = nullptr;  // in the backend's memory
  std::vector<float> inv_freq_host_;
  StepBuffers buf_;
  StepPointers ptr_;

  bool graphs_on_ = false;
  std::vector<int> graph_batches_;
  std::map<std::pair<int, int64_t>, GraphSet> graphs_;
  // The KV cache the graphs were recorded over: its arrays and its layer stride.
  struct GraphKv {
    const float* k = nullptr;
    const float* v = nullptr;
    int num_blocks = 0;
    int block_size = 0;
    bool operator==(const GraphKv&) const = default;
  };
  GraphKv graph_kv_;
  std::atomic<uint64_t> graph_recorded_{0}, graph_steps_{0}, graph_stale_{0};
};

}  // namespace engram
