// Model's step graphs (model.h, StepGraphOptions). A decode step's work depends on the batch
// and the context only through sizes and the data behind fixed addresses (token ids,
// positions, block tables, tap pointers, the Engram rows), so once those sizes are rounded to a
// few buckets every decode step of a bucket is the same sequence of launches. The host still
// acts between segments: it waits for the prefetcher before each Engram layer and copies that
// layer's rows in, on the copy stream, while the previous segment's graph runs.
#include <algorithm>
#include <bit>

#include "server/model/model.h"
#include "server/util/str_cat.h"

namespace engram {

namespace {

// Captured batch sizes: 1, 2, 4, 8, then steps of 1.5x rounded up to a multiple of 4 (12, 20,
// 32, 48, 72, ...), and max_batch itself. vLLM captures every multiple of 8; this keeps the
// graph count logarithmic at the cost of padding: at most 3 of 8 rows (5 -> 8), 7 of 20.
std::vector<int> GraphBatchSizes(int max_batch) {
  std::vector<int> sizes;
  for (int b = 1; b < max_batch; b = b < 8 ? 2 * b : (b * 3 / 2 + 3) / 4 * 4) sizes.push_back(b);
  sizes.push_back(max_batch);
  return sizes;
}

// Contexts are padded to a power of two of at least this many positions.
constexpr int64_t kMinGraphContext = 64;
// Recorded (batch, context) shapes kept before all are dropped and recorded anew.
constexpr size_t kMaxGraphShapes = 256;
// Refused recordings after which a shape runs directly for good.
constexpr int kMaxGraphFailures = 3;

}  // namespace

absl::Status Model::ConfigureStepGraphs(const StepGraphOptions& o) {
  if (o.max_batch < 1)
    return absl::InvalidArgumentError(
        StrCat("--max-graph-batch-size must be >= 1, got ", o.max_batch));
  graphs_.clear();
  graph_kv_ = GraphKv{};
  switch (o.mode) {
    case StepGraphOptions::Mode::kOff:
      graphs_on_ = false;
      break;
    case StepGraphOptions::Mode::kAuto:
      graphs_on_ = !backend_->host_memory() && backend_->SupportsGraphs();
      break;
    case StepGraphOptions::Mode::kOn:
      if (!backend_->SupportsGraphs())
        return absl::InvalidArgumentError(StrCat("step graphs were asked for, but the ",
                                                 backend_->name(),
                                                 " backend has none (use --enforce-eager)"));
      graphs_on_ = true;
      break;
  }
  graph_batches_ = graphs_on_ ? GraphBatchSizes(o.max_batch) : std::vector<int>{};
  return absl::OkStatus();
}

void Model::ReserveStep(int64_t max_tokens, int64_t max_logit_rows) {
  if (ReserveStepBuffers(max_tokens, max_logit_rows, false)) graphs_.clear();
}

std::optional<Model::GraphShape> Model::GraphShapeFor(std::span<const StepEntry> step,
                                                      const KvCache& kv,
                                                      const ForwardDump* dump) const {
  if (!graphs_on_ || dump != nullptr || step.empty() ||
      step.size() > static_cast<size_t>(graph_batches_.back()))
    return std::nullopt;
  int64_t max_end = 0;
  for (const StepEntry& e : step) {
    if (e.tokens.size() != 1 || e.all_logits) return std::nullopt;  // prefill: no graph
    max_end = std::max(max_end, e.state->num_cached + 1);
  }
  GraphShape g;
  g.batch = *std::lower_bound(graph_batches_.begin(), graph_batches_.end(),
                              static_cast<int>(step.size()));
  g.context =
      std::min<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max(max_end, kMinGraphContext))),
                        config().max_position_embeddings);
  g.stride = static_cast<int>((g.context + kv.block_size() - 1) / kv.block_size());
  return g;
}

Model::GraphSet* Model::GraphsFor(const GraphShape& shape, KvCache& kv) {
  const KvLayer first = kv.layer(0);
  const GraphKv kv_id{first.k, first.v, kv.num_blocks(), kv.block_size()};
  if (kv_id != graph_kv_) {
    graphs_.clear();
    graph_kv_ = kv_id;
  }
  // Sized for the largest shape at once: if the metadata buffer moved, every graph would go.
  const size_t bytes = GraphMetaBytes(kv.block_size());
  if (buf_.graph_meta.bytes() < bytes) {
    buf_.graph_meta.Reserve(backend_, bytes);
    graphs_.clear();
  }
  if (graphs_.size() >= kMaxGraphShapes && graphs_.count({shape.batch, shape.context}) == 0)
    graphs_.clear();
  GraphSet& set = graphs_[{shape.batch, shape.context}];
  return set.failures >= kMaxGraphFailures ? nullptr : &set;
}

void Model::IssueSegment(GraphSet* set, size_t seg, bool* all_graphs,
                         const std::function<void()>& ops) {
  if (set == nullptr || !set->warm) {
    *all_graphs = false;
    ops();
    return;
  }
  if (set->segments.size() <= seg) set->segments.resize(seg + 1);
  std::unique_ptr<BackendGraph>& graph = set->segments[seg];
  if (graph == nullptr) {
    backend_->BeginGraph();
    ops();
    std::string error;
    graph = backend_->EndGraph(&error);
    if (graph == nullptr) {
      ++set->failures;
      *all_graphs = false;
      ops();  // the recording did not run them
      return;
    }
    graph_recorded_.fetch_add(1, std::memory_order_relaxed);
  }
  if (!backend_->LaunchGraph(*graph)) {
    graph_stale_.fetch_add(1, std::memory_order_relaxed);
    graph.reset();
    *all_graphs = false;
    ops();
  }
}

}  // namespace engram
