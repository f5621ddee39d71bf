// The Engram module of each layer for a whole step (DESIGN §2.1 steps 5-8): the hashed rows the
// prefetcher gathered, projected to keys and value, gated per branch, then the causal short conv
// whose earlier inputs come from this step's rows or from each sequence's history ring (the tap
// pointers uploaded with the step's metadata), added to the residual stream.
#include "server/model/engram_memory.h"

#include <algorithm>
#include <cstring>

#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {

EngramMemory::EngramMemory(const ModelFiles& files, const Weights& w, Backend* b)
    : c_(files.config()), w_(w), b_(b), hasher_(files.config().engram) {}

absl::StatusOr<std::unique_ptr<EngramMemory>> EngramMemory::Open(
    const ModelFiles& files, const Weights& weights, Backend* backend,
    std::vector<int64_t> compress, std::vector<std::unique_ptr<TableStore>> stores, bool prefetch,
    std::optional<EngramRowPath> row_path, uint64_t device_cache_bytes) {
  std::unique_ptr<EngramMemory> m(new EngramMemory(files, weights, backend));
  const EngramConfig& e = files.config().engram;
  m->compress_ = std::move(compress);
  if (e.enabled()) m->compressed_pad_ = m->compress_[e.pad_id];
  std::vector<EngramRowPath> paths;
  RETURN_IF_ERROR(m->SetUpRowPaths(stores, row_path, device_cache_bytes, &paths));
  m->prefetcher_ = std::make_unique<EngramPrefetcher>(
      m->hasher_, m->compress_, m->compressed_pad_, std::move(stores), prefetch, std::move(paths));
  // One entry per slot from the start: StepBytes names these buffers before ReserveStep runs.
  const size_t slots = static_cast<size_t>(m->num_slots());
  m->emb_.resize(slots);
  m->packed_.resize(slots);
  m->row_ids_.resize(slots);
  m->ref_.resize(slots);
  return m;
}

absl::Status EngramMemory::SetUpRowPaths(const std::vector<std::unique_ptr<TableStore>>& stores,
                                         std::optional<EngramRowPath> row_path,
                                         uint64_t device_cache_bytes,
                                         std::vector<EngramRowPath>* paths) {
  const EngramConfig& e = c_.engram;
  backend_tables_.resize(stores.size());
  for (size_t slot = 0; slot < stores.size(); ++slot) {
    const TableStore& store = *stores[slot];
    EngramRowPath want =
        row_path.value_or(b_->host_memory()                  ? EngramRowPath::kEmbeddings
                          : store.resident_rows() != nullptr ? EngramRowPath::kIds
                                                             : EngramRowPath::kPacked);
    if (want == EngramRowPath::kIds) {
      const TableLayout& l = store.layout();
      if (store.resident_rows() == nullptr)
        return absl::InvalidArgumentError(StrCat(
            "Engram layer ", e.layer_ids[slot], ": its table is on the ", store.tier_name(),
            " tier, but the backend can read rows itself only from a table in RAM (--engram-tier "
            "ram, or --engram-device-path staged)"));
      std::string error;
      backend_tables_[slot] =
          b_->OpenHostTable(PackedTable{store.resident_rows(), l.rows,
                                        static_cast<int64_t>(l.packed_bytes), l.dtype, l.d},
                            device_cache_bytes, kMaxRowsPerFetch, &error);
      if (backend_tables_[slot] == nullptr) {
        if (row_path.has_value())
          return absl::FailedPreconditionError(StrCat("Engram layer ", e.layer_ids[slot], ": the ",
                                                      b_->name(),
                                                      " backend cannot read its table: ", error));
        want = EngramRowPath::kPacked;  // auto: the CPU gathers instead
      }
    }
    paths->push_back(want);
  }
  return absl::OkStatus();
}

bool EngramMemory::OwnsEmbeddings(int slot, bool fixed_address) const {
  // Host-memory backends read the prefetcher's floats in place, except in a graph, which needs
  // them at a fixed address.
  return !(prefetcher_->path(slot) == EngramRowPath::kEmbeddings && b_->host_memory() &&
           !fixed_address);
}

// The buffers by name, each with its bytes for `rows` rows; StepBytes sums what ReserveStep
// reserves, so the two cannot drift.
#define ENGRAM_STEP_BUFFERS(X)                                                               \
  for (int slot = 0; slot < num_slots(); ++slot) {                                           \
    const EngramRowPath path = prefetcher_->path(slot);                                      \
    const int64_t pb = static_cast<int64_t>(prefetcher_->store(slot).layout().packed_bytes); \
    if (!OwnsEmbeddings(slot, fixed_address)) continue;                                      \
    X(emb_[slot], rows* K * 4);                                                              \
    if (path == EngramRowPath::kEmbeddings) continue;                                        \
    X(packed_[slot], refs* pb);                                                              \
    X(ref_[slot], refs * 4);                                                                 \
    if (path == EngramRowPath::kIds) X(row_ids_[slot], refs * 8);                            \
  }                                                                                          \
  X(value_, rows* D * 4);                                                                    \
  X(keys_, M* rows* D * 4);                                                                  \
  X(gates_, rows* M * 4);                                                                    \
  X(gated_, rows* M* D * 4);                                                                 \
  X(z_, rows* M* D * 4);                                                                     \
  if (want_y) X(y_, rows* M* D * 4);

uint64_t EngramMemory::StepBytes(int64_t rows, bool fixed_address, bool want_y) const {
  if (!on()) return 0;
  const int64_t D = c_.hidden_size, M = c_.hc_mult;
  const int64_t K = c_.engram.embed_dim();
  const int64_t refs = rows * c_.engram.heads_per_layer();  // bounds the distinct rows too
  uint64_t total = 0;
  auto add = [&](const BackendBuffer&, int64_t bytes) {
    total += static_cast<uint64_t>(std::max<int64_t>(bytes, 1));
  };
  ENGRAM_STEP_BUFFERS(add)
  return total + MetaBytes(rows);
}

bool EngramMemory::ReserveStep(int64_t rows, bool fixed_address, bool want_y) {
  if (!on()) return false;
  const int64_t D = c_.hidden_size, M = c_.hc_mult;
  const int64_t K = c_.engram.embed_dim();
  const int64_t refs = rows * c_.engram.heads_per_layer();
  bool moved = false;
  auto reserve = [&](BackendBuffer& b, int64_t bytes) {
    const size_t before = b.bytes();
    b.Reserve(b_, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
    moved |= b.bytes() != before;
  };
  ENGRAM_STEP_BUFFERS(reserve)
  return moved;
}
#undef ENGRAM_STEP_BUFFERS

uint64_t EngramMemory::MetaBytes(int64_t rows) const {
  // Per slot and row: w-1 tap pointers and one store pointer; each section 16-byte aligned.
  const auto per_slot = static_cast<uint64_t>(rows * c_.engram.kernel_size) * sizeof(void*);
  return static_cast<uint64_t>(num_slots()) * (per_slot + 2 * 16);
}

uint64_t EngramMemory::SequenceStateBytes() const {
  if (!on()) return 0;
  const EngramConfig& e = c_.engram;
  const int64_t C = static_cast<int64_t>(c_.hc_mult) * c_.hidden_size;
  const int64_t ring = static_cast<int64_t>(e.kernel_size - 1) * e.max_ngram_size;
  return static_cast<uint64_t>(num_slots() * ring * C) * sizeof(float);
}

void EngramMemory::ReserveSequenceState(SequenceState& s) const {
  if (on()) s.conv_ring.Reserve(b_, SequenceStateBytes());
}

void EngramMemory::AddStepMeta(std::span<const EngramStepSeq> seqs, int64_t rows,
                               UploadBlob& blob) {
  // Conv taps: z at t - (w-1-i)*N for i < w-1, from this step's z when that time falls inside
  // the step, else from the sequence's ring, else zero. The last K times of each sequence's
  // step are stored into the ring after the conv. Rows of no sequence (a graph's padding) tap
  // nothing and store nothing.
  const EngramConfig& e = c_.engram;
  const int N = e.max_ngram_size, kw = e.kernel_size;
  const int64_t C = static_cast<int64_t>(c_.hc_mult) * c_.hidden_size;
  const int64_t ring = static_cast<int64_t>(kw - 1) * N;
  meta_taps_.clear();
  meta_store_.clear();
  std::vector<const float*> taps;
  std::vector<float*> store;
  const float* z = z_.get<float>();
  for (int slot = 0; slot < num_slots(); ++slot) {
    taps.assign(rows * (kw - 1), nullptr);
    store.assign(rows, nullptr);
    for (const EngramStepSeq& s : seqs) {
      float* ring_base = s.state->conv_ring.get<float>() + slot * ring * C;
      const int64_t t0 = s.state->num_cached;
      const int64_t t_end = t0 + (s.row_end - s.row_begin);
      for (int32_t r = s.row_begin; r < s.row_end; ++r) {
        const int64_t t = t0 + (r - s.row_begin);
        for (int i = 0; i < kw - 1; ++i) {
          const int64_t tau = t - static_cast<int64_t>(kw - 1 - i) * N;
          const float* p = nullptr;
          if (tau >= t0)
            p = z + (s.row_begin + (tau - t0)) * C;
          else if (tau >= 0)
            p = ring_base + (tau % ring) * C;
          taps[r * (kw - 1) + i] = p;
        }
        if (t >= t_end - ring) store[r] = ring_base + (t % ring) * C;
      }
    }
    meta_taps_.push_back(blob.Add(taps));
    meta_store_.push_back(blob.Add(store));
  }
}

void EngramMemory::BindStepMeta(const char* base) {
  taps_.clear();
  z_store_.clear();
  for (size_t slot = 0; slot < meta_taps_.size(); ++slot) {
    taps_.push_back(reinterpret_cast<const float* const*>(base + meta_taps_[slot]));
    z_store_.push_back(reinterpret_cast<float* const*>(base + meta_store_[slot]));
  }
}

const void* EngramMemory::Zeros(size_t bytes) {
  if (zeros_.size() < bytes) zeros_.assign(bytes, 0);
  return zeros_.data();
}

absl::StatusOr<EngramMemory::Staged> EngramMemory::Stage(EngramPrefetcher::Ticket t, int slot,
                                                         int64_t padded_rows, bool fixed_address) {
  // (N-1)*H rows of d values per token, concatenated: exactly e_t of length (N-1)*E. This is
  // the only place the forward pass waits for the prefetcher.
  ASSIGN_OR_RETURN(const SlotRows rows, prefetcher_->Wait(t, slot));
  const EngramRowPath path = prefetcher_->path(slot);
  const TableLayout& l = prefetcher_->store(slot).layout();
  const int64_t heads = c_.engram.heads_per_layer();
  // A graph step's padding rows read zeros (floats), or row 0 of the step's distinct rows.
  const int64_t pad_refs = padded_rows * heads - rows.num_refs;
  Staged out;
  out.emb = emb_[slot].get<float>();
  out.refs = padded_rows * heads;
  if (path == EngramRowPath::kEmbeddings) {
    if (!OwnsEmbeddings(slot, fixed_address)) {
      out.host_emb = rows.embeddings;
      return out;
    }
    const size_t row_bytes = static_cast<size_t>(l.d) * sizeof(float);
    b_->Upload(out.emb, rows.embeddings, static_cast<size_t>(rows.num_refs) * row_bytes);
    if (pad_refs > 0)
      b_->Upload(out.emb + rows.num_refs * l.d, Zeros(pad_refs * row_bytes),
                 static_cast<size_t>(pad_refs) * row_bytes);
    return out;
  }
  const auto pb = static_cast<int64_t>(l.packed_bytes);
  void* packed = packed_[slot].get();
  int32_t* ref = ref_[slot].get<int32_t>();
  b_->Upload(ref, rows.ref, static_cast<size_t>(rows.num_refs) * sizeof(int32_t));
  if (pad_refs > 0)
    b_->Upload(ref + rows.num_refs, Zeros(pad_refs * sizeof(int32_t)),
               static_cast<size_t>(pad_refs) * sizeof(int32_t));
  if (path == EngramRowPath::kPacked) {
    b_->Upload(packed, rows.packed, static_cast<size_t>(rows.num_unique * pb));
  } else {
    auto* ids = row_ids_[slot].get<int64_t>();
    b_->Upload(ids, rows.unique, static_cast<size_t>(rows.num_unique) * sizeof(int64_t));
    for (int64_t i = 0; i < rows.num_unique; i += kMaxRowsPerFetch)
      b_->FetchPackedRows(*backend_tables_[slot], ids + i,
                          std::min<int64_t>(kMaxRowsPerFetch, rows.num_unique - i),
                          static_cast<char*>(packed) + i * pb);
  }
  out.dequant = true;
  return out;
}

void EngramMemory::Issue(int slot, const Staged& staged, int64_t T, float* h, bool want_y) {
  const EngramConfig& e = c_.engram;
  const EngramWeights& w = w_.engram[slot];
  const int D = c_.hidden_size, M = c_.hc_mult;
  const int64_t C = static_cast<int64_t>(M) * D;

  const float* emb = staged.host_emb != nullptr ? staged.host_emb : staged.emb;
  if (staged.dequant) {
    const TableLayout& l = prefetcher_->store(slot).layout();
    b_->DequantRows(packed_[slot].get(), static_cast<int64_t>(l.packed_bytes), l.dtype, l.d,
                    ref_[slot].get<int32_t>(), staged.refs, staged.emb);
  }

  float* value = value_.get<float>();
  float* keys = keys_.get<float>();
  b_->Linear(emb, T, w.value_proj, w.value_bias, value);
  for (int m = 0; m < M; ++m) b_->Linear(emb, T, w.key_proj[m], w.key_bias[m], keys + m * T * D);

  EngramGateParams gp;
  gp.rows = T;
  gp.hidden = D;
  gp.branches = M;
  gp.hidden_in = h;
  gp.keys = keys;
  gp.value = value;
  gp.key_norm = w.key_norm;
  gp.query_norm = w.query_norm;
  gp.gates = gates_.get<float>();
  gp.gated = gated_.get<float>();
  gp.conv_norm = w.conv_norm;
  gp.conv_eps = 1e-5f;
  gp.z = z_.get<float>();
  b_->EngramGate(gp);

  ShortConvParams cp;
  cp.rows = T;
  cp.channels = static_cast<int>(C);
  cp.kernel = e.kernel_size;
  cp.weight = w.conv_weight;
  cp.z = gp.z;
  cp.taps = taps_[slot];
  cp.gated = gp.gated;
  cp.out = want_y ? y_.get<float>() : nullptr;
  cp.residual = h;
  cp.z_store = z_store_[slot];
  b_->ShortConv(cp);
}

void EngramMemory::Advance(SequenceState& s, const std::vector<int64_t>& compressed) const {
  const size_t keep_ids = static_cast<size_t>(c_.engram.max_ngram_size - 1);
  auto& tail = s.compressed_tail;
  tail.insert(tail.end(), compressed.begin(), compressed.end());
  if (tail.size() > keep_ids)
    tail.erase(tail.begin(), tail.end() - static_cast<std::ptrdiff_t>(keep_ids));
}

}  // namespace engram
