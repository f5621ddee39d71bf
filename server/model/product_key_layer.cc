#include "server/model/product_key_layer.h"

#include <algorithm>
#include <chrono>

#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

// Distinct rows per FetchPackedRows call (the backend's row cache sizes its state by it).
constexpr int kMaxRowsPerFetch = 1 << 16;

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

ModelTable TableOf(const ModelFiles& files, const std::string& key) {
  return {&files.ProductKeyFile(key), ProductKeyValuesName(key), ProductKeyValuesScaleName(key)};
}

// The step buffers of one row, in bytes, by name; StepBytes and ReserveStep both read it.
struct RowBytes {
  int64_t q, scores, best, weights, idx, y, g, gate, o;
};
RowBytes PerRow(const ModelConfig& c) {
  const ProductKeyConfig& p = c.product_key;
  const int64_t hk = static_cast<int64_t>(p.heads) * p.knn;
  return {static_cast<int64_t>(p.heads) * p.k_dim * 4,
          2 * p.heads * p.n_keys * 4,
          2 * hk * 4,
          hk * 4,
          hk * 8,
          static_cast<int64_t>(p.v_dim) * 4,
          p.swilu_projection ? static_cast<int64_t>(p.v_dim) * 4 : 0,
          p.gated ? 4 : 0,
          static_cast<int64_t>(c.hidden_size) * 4};
}

}  // namespace

std::vector<std::pair<ModelTable, TableStoreOptions>> ProductKeyMemory::Tables(
    const ModelFiles& files, const ProductKeyMemoryOptions& o) {
  std::vector<std::pair<ModelTable, TableStoreOptions>> out;
  for (const auto& [key, file] : files.config().product_key.table_files)
    out.emplace_back(TableOf(files, key), o.ForTable(key));
  return out;
}

uint64_t ProductKeyMemory::StepBytes(int64_t rows) const {
  const RowBytes b = PerRow(c_);
  int64_t per_row = b.q + b.scores + 2 * b.best + b.weights + b.idx + b.y + b.g + b.gate + b.o;
  if (any_host_fetch_) {
    const int64_t refs = static_cast<int64_t>(c_.product_key.heads) * c_.product_key.knn;
    per_row += refs * (MaxPackedBytes() + 8 + 8);  // packed rows, refs, distinct ids
  }
  return static_cast<uint64_t>(std::max<int64_t>(rows, 1) * per_row);
}

int64_t ProductKeyMemory::MaxPackedBytes() const {
  int64_t pb = 0;
  for (const auto& s : stores_) pb = std::max<int64_t>(pb, s->layout().packed_bytes);
  return pb;
}

absl::StatusOr<std::unique_ptr<ProductKeyMemory>> ProductKeyMemory::Open(
    const ModelFiles& files, const Weights& weights, Backend* backend,
    const ProductKeyMemoryOptions& o) {
  const ModelConfig& c = files.config();
  std::unique_ptr<ProductKeyMemory> m(new ProductKeyMemory(c, weights, backend));
  for (const auto& [key, file] : c.product_key.table_files) {
    const TableStoreOptions& opt = o.ForTable(key);
    ASSIGN_OR_RETURN(auto store, OpenTableStore(TableOf(files, key), opt));
    const TableLayout& l = store->layout();
    // In place: the RAM copy, or the mapped file when its rows are already packed (fp8 keeps
    // its scales in a second tensor, so its mapped rows are not).
    const void* in_place = store->resident_rows();
    if (in_place == nullptr && opt.tier == TableTier::kMmap && l.dtype != DType::kF8E4M3) {
      const SafetensorsFile& f = files.ProductKeyFile(key);
      in_place = f.data(*f.Find(ProductKeyValuesName(key)));
    }
    ProductKeyRowPath path = o.row_path.value_or(
        backend->host_memory()
            ? (in_place != nullptr ? ProductKeyRowPath::kDirect : ProductKeyRowPath::kStaged)
            : (store->resident_rows() != nullptr ? ProductKeyRowPath::kIds
                                                 : ProductKeyRowPath::kStaged));
    std::unique_ptr<BackendTable> bt;
    if (path == ProductKeyRowPath::kDirect && (!backend->host_memory() || in_place == nullptr))
      return absl::InvalidArgumentError(StrCat(
          "product-key values table '", key, "' (", store->tier_name(),
          " tier): reading rows in place needs a host-memory backend and a table in RAM or a "
          "mapped non-fp8 file; use the staged path"));
    if (path == ProductKeyRowPath::kIds) {
      if (store->resident_rows() == nullptr)
        return absl::InvalidArgumentError(
            StrCat("product-key values table '", key, "': its table is on the ", store->tier_name(),
                   " tier, but the backend can read rows itself only from a table in RAM"));
      std::string error;
      bt = backend->OpenHostTable(PackedTable{store->resident_rows(), l.rows,
                                              static_cast<int64_t>(l.packed_bytes), l.dtype, l.d},
                                  o.device_cache_bytes, kMaxRowsPerFetch, &error);
      if (bt == nullptr) {
        if (o.row_path.has_value())
          return absl::FailedPreconditionError(StrCat("product-key values table '", key, "': the ",
                                                      backend->name(),
                                                      " backend cannot read it: ", error));
        path = ProductKeyRowPath::kStaged;
      }
    }
    m->keys_.push_back(key);
    m->stores_.push_back(std::move(store));
    m->paths_.push_back(path);
    m->options_.push_back(opt);
    m->direct_rows_.push_back(path == ProductKeyRowPath::kDirect ? in_place : nullptr);
    m->backend_tables_.push_back(std::move(bt));
    m->any_host_fetch_ |= path != ProductKeyRowPath::kDirect;
  }
  for (int layer : c.product_key.layer_ids) {
    const std::string key = c.product_key.TableKey(layer);
    const auto it = std::find(m->keys_.begin(), m->keys_.end(), key);
    m->table_of_.push_back(static_cast<size_t>(it - m->keys_.begin()));
  }
  return m;
}

bool ProductKeyMemory::ReserveStep(int64_t rows) {
  if (rows <= reserved_rows_) return false;
  reserved_rows_ = rows;
  const RowBytes b = PerRow(c_);
  auto reserve = [&](BackendBuffer& buf, int64_t per_row) {
    buf.Reserve(b_, static_cast<size_t>(std::max<int64_t>(rows * per_row, 1)));
  };
  reserve(q_, b.q);
  reserve(scores_, b.scores);
  reserve(best_scores_, b.best);
  reserve(best_ids_, b.best);
  reserve(weights_, b.weights);
  reserve(idx_, b.idx);
  reserve(y_, b.y);
  reserve(g_, b.g);
  reserve(gate_, b.gate);
  reserve(o_, b.o);
  if (any_host_fetch_) {
    reserve(packed_, b.idx / 8 * MaxPackedBytes());
    reserve(ref_, b.idx);
    reserve(unique_, b.idx);
  }
  return true;  // every buffer may have moved
}

void ProductKeyMemory::IssueChoose(int slot, const float* xn, int64_t rows) {
  const ProductKeyConfig& p = c_.product_key;
  const ProductKeyWeights& w = w_.product_key[slot];
  b_->Linear(xn, rows, w.query, w.query_bias, q_.get<float>());
  ProductKeyScoresParams sp;
  sp.rows = rows;
  sp.heads = p.heads;
  sp.k_dim = p.k_dim;
  sp.n_keys = p.n_keys;
  sp.query = q_.get<float>();
  sp.keys = w.keys;
  sp.scores = scores_.get<float>();
  b_->ProductKeyScores(sp);
  b_->RowTopK(scores_.get<float>(), rows * p.heads * 2, p.n_keys, p.knn, best_scores_.get<float>(),
              best_ids_.get<int32_t>());
  ProductKeyCandidatesParams cp;
  cp.groups = rows * p.heads;
  cp.knn = p.knn;
  cp.n_keys = p.n_keys;
  cp.best_scores = best_scores_.get<float>();
  cp.best_ids = best_ids_.get<int32_t>();
  cp.weights = weights_.get<float>();
  cp.indices = idx_.get<int64_t>();
  b_->ProductKeyCandidates(cp);
  if (p.swilu_projection) b_->Linear(xn, rows, w.swilu, w.swilu_bias, g_.get<float>());
  if (p.gated) b_->Linear(xn, rows, w.gating, w.gating_bias, gate_.get<float>());
}

absl::Status ProductKeyMemory::Fetch(int slot, int64_t rows) {
  const size_t t = table_of_[slot];
  if (paths_[t] == ProductKeyRowPath::kDirect) return absl::OkStatus();
  const uint64_t start = NowNs();
  const int64_t refs = rows * c_.product_key.heads * c_.product_key.knn;
  host_idx_.resize(static_cast<size_t>(refs));
  b_->Download(host_idx_.data(), idx_.get(), host_idx_.size() * sizeof(int64_t));
  // Distinct rows ascending (the SSD tier merges adjacent reads), each reference mapped to its.
  host_unique_ = host_idx_;
  std::sort(host_unique_.begin(), host_unique_.end());
  host_unique_.erase(std::unique(host_unique_.begin(), host_unique_.end()), host_unique_.end());
  host_ref_.resize(host_idx_.size());
  for (size_t i = 0; i < host_idx_.size(); ++i)
    host_ref_[i] = std::lower_bound(host_unique_.begin(), host_unique_.end(), host_idx_[i]) -
                   host_unique_.begin();
  const auto n = static_cast<int64_t>(host_unique_.size());
  const auto pb = static_cast<int64_t>(stores_[t]->layout().packed_bytes);
  b_->Upload(ref_.get(), host_ref_.data(), host_ref_.size() * sizeof(int64_t));
  if (paths_[t] == ProductKeyRowPath::kStaged) {
    host_packed_.resize(static_cast<size_t>(n * pb));
    RETURN_IF_ERROR(stores_[t]->Gather(host_unique_, host_packed_.data()));
    b_->Upload(packed_.get(), host_packed_.data(), host_packed_.size());
  } else {
    auto* ids = unique_.get<int64_t>();
    b_->Upload(ids, host_unique_.data(), host_unique_.size() * sizeof(int64_t));
    for (int64_t i = 0; i < n; i += kMaxRowsPerFetch)
      b_->FetchPackedRows(*backend_tables_[t], ids + i, std::min<int64_t>(kMaxRowsPerFetch, n - i),
                          packed_.get<char>() + i * pb);
  }
  const uint64_t ns = NowNs() - start;
  stats_.unique_rows.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  stats_.fetch_ns.fetch_add(ns, std::memory_order_relaxed);
  stats_.stall_ns.fetch_add(ns, std::memory_order_relaxed);
  return absl::OkStatus();
}

void ProductKeyMemory::IssueRead(int slot, int64_t rows, float* h) {
  const ProductKeyConfig& p = c_.product_key;
  const ProductKeyWeights& w = w_.product_key[slot];
  const size_t t = table_of_[slot];
  const TableLayout& l = stores_[t]->layout();
  const bool direct = paths_[t] == ProductKeyRowPath::kDirect;
  WeightedRowSumParams ws;
  ws.rows = rows;
  ws.per_row = p.heads * p.knn;
  ws.packed = direct ? direct_rows_[t] : packed_.get();
  ws.packed_bytes = static_cast<int64_t>(l.packed_bytes);
  ws.dtype = l.dtype;
  ws.d = l.d;
  ws.rows_idx = direct ? idx_.get<int64_t>() : ref_.get<int64_t>();
  ws.weights = weights_.get<float>();
  ws.out = y_.get<float>();
  b_->WeightedRowSum(ws);
  float* y = y_.get<float>();
  if (p.swilu_projection) b_->SwiGlu(g_.get<float>(), y, rows * p.v_dim, y);  // y * SiLU(W1 x)
  // Without value_proj, v_dim == D (ModelFiles::Open) and o is y itself.
  float* o = y;
  if (w.value_proj.data != nullptr) {
    o = o_.get<float>();
    b_->Linear(y, rows, w.value_proj, w.value_bias, o);
  }
  if (p.gated) b_->SigmoidScaleRows(gate_.get<float>(), rows, c_.hidden_size, o);
  b_->AddToBranches(o, rows, 1, c_.hidden_size, h);
}

const float* ProductKeyMemory::output(int slot) const {
  return w_.product_key[slot].value_proj.data != nullptr ? o_.get<float>() : y_.get<float>();
}

void ProductKeyMemory::CountRead(int64_t rows) {
  const ProductKeyConfig& p = c_.product_key;
  stats_.reads.fetch_add(1, std::memory_order_relaxed);
  stats_.lookups.fetch_add(static_cast<uint64_t>(rows * p.heads * p.knn),
                           std::memory_order_relaxed);
}

}  // namespace engram
