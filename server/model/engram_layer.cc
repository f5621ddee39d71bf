// The Engram module of one layer for a whole step (DESIGN §2.1 steps 5-8): the hashed rows the
// prefetcher gathered, projected to keys and value, gated per branch, then the causal short conv
// whose earlier inputs come from this step's rows or from each sequence's history ring (the tap
// pointers Forward uploaded with the step's metadata), added to the residual stream.
#include <algorithm>

#include "server/model/model.h"

namespace engram {

const float* Model::EngramRowsOnBackend(int slot, const SlotRows& rows) {
  const EngramRowPath path = prefetcher_->path(slot);
  float* emb = buf_.emb[slot].get<float>();
  const TableLayout& l = prefetcher_->store(slot).layout();
  if (path == EngramRowPath::kEmbeddings) {
    if (backend_->host_memory()) return rows.embeddings;
    backend_->Upload(emb, rows.embeddings,
                     static_cast<size_t>(rows.num_refs * l.d) * sizeof(float));
    return emb;
  }
  const auto pb = static_cast<int64_t>(l.packed_bytes);
  void* packed = buf_.packed[slot].get();
  int32_t* ref = buf_.ref[slot].get<int32_t>();
  backend_->Upload(ref, rows.ref, static_cast<size_t>(rows.num_refs) * sizeof(int32_t));
  if (path == EngramRowPath::kPacked) {
    backend_->Upload(packed, rows.packed, static_cast<size_t>(rows.num_unique * pb));
  } else {
    auto* ids = buf_.row_ids[slot].get<int64_t>();
    backend_->Upload(ids, rows.unique, static_cast<size_t>(rows.num_unique) * sizeof(int64_t));
    for (int64_t i = 0; i < rows.num_unique; i += kMaxRowsPerFetch)
      backend_->FetchPackedRows(*backend_tables_[slot], ids + i,
                                std::min<int64_t>(kMaxRowsPerFetch, rows.num_unique - i),
                                static_cast<char*>(packed) + i * pb);
  }
  backend_->DequantRows(packed, pb, l.dtype, l.d, ref, rows.num_refs, emb);
  return emb;
}

absl::Status Model::RunEngram(int slot, EngramPrefetcher::Ticket ticket, const ForwardDump* dump) {
  const ModelConfig& c = config();
  const EngramConfig& e = c.engram;
  const EngramWeights& w = weights_.engram[slot];
  const int D = c.hidden_size, M = e.hc_mult;
  const int64_t T = ptr_.rows;
  const int64_t C = static_cast<int64_t>(M) * D;

  // (N-1)*H rows of d values per token, concatenated: exactly e_t of length (N-1)*E. This is the
  // only place the forward pass waits for the prefetcher.
  absl::StatusOr<SlotRows> fetched = prefetcher_->Wait(ticket, slot);
  if (!fetched.ok()) return fetched.status();
  const float* emb = EngramRowsOnBackend(slot, *fetched);

  float* value = buf_.value.get<float>();
  float* keys = buf_.keys.get<float>();
  backend_->Linear(emb, T, w.value_proj, w.value_bias, value);
  for (int m = 0; m < M; ++m)
    backend_->Linear(emb, T, w.key_proj[m], w.key_bias[m], keys + m * T * D);

  EngramGateParams gp;
  gp.rows = T;
  gp.hidden = D;
  gp.branches = M;
  gp.hidden_in = buf_.h.get<float>();
  gp.keys = keys;
  gp.value = value;
  gp.key_norm = w.key_norm;
  gp.query_norm = w.query_norm;
  gp.gates = buf_.gates.get<float>();
  gp.gated = buf_.gated.get<float>();
  gp.conv_norm = w.conv_norm;
  gp.conv_eps = 1e-5f;
  gp.z = buf_.z.get<float>();
  backend_->EngramGate(gp);

  const bool want_y =
      dump != nullptr && dump->engram_layer == e.layer_ids[slot] && dump->engram_output != nullptr;
  ShortConvParams cp;
  cp.rows = T;
  cp.channels = static_cast<int>(C);
  cp.kernel = e.kernel_size;
  cp.weight = w.conv_weight;
  cp.z = gp.z;
  cp.taps = ptr_.taps[slot];
  cp.gated = gp.gated;
  cp.out = want_y ? buf_.y.get<float>() : nullptr;
  cp.residual = buf_.h.get<float>();
  cp.z_store = ptr_.z_store[slot];
  backend_->ShortConv(cp);

  if (want_y) {
    dump->engram_output->resize(T * C);
    backend_->Download(dump->engram_output->data(), cp.out, T * C * sizeof(float));
  }
  if (dump != nullptr && dump->gates != nullptr) {
    dump->gates->resize(e.layer_ids.size());
    (*dump->gates)[slot].resize(T * M);
    backend_->Download((*dump->gates)[slot].data(), gp.gates, T * M * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace engram
