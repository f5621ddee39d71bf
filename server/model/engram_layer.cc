// The Engram module of one layer for a whole step (DESIGN §2.1 steps 5-8): the hashed rows the
// prefetcher gathered, projected to keys and value, gated per branch, then the causal short conv
// whose earlier inputs come from this step's rows or from each sequence's history ring (the tap
// pointers Forward uploaded with the step's metadata), added to the residual stream.
#include <algorithm>
#include <cstring>

#include "server/model/model.h"

namespace engram {

const void* Model::Zeros(size_t bytes) {
  if (zeros_.size() < bytes) zeros_.assign(bytes, 0);
  return zeros_.data();
}

Model::StagedRows Model::StageEngramRows(int slot, const SlotRows& rows, int64_t padded_rows,
                                         bool fixed_address) {
  const EngramRowPath path = prefetcher_->path(slot);
  const TableLayout& l = prefetcher_->store(slot).layout();
  const int64_t heads = config().engram.heads_per_layer();
  // A graph step's padding rows read zeros (floats), or row 0 of the step's distinct rows.
  const int64_t pad_refs = padded_rows * heads - rows.num_refs;
  StagedRows out;
  out.emb = buf_.emb[slot].get<float>();
  out.refs = padded_rows * heads;
  if (path == EngramRowPath::kEmbeddings) {
    if (backend_->host_memory() && !fixed_address) {
      out.host_emb = rows.embeddings;
      return out;
    }
    const size_t row_bytes = static_cast<size_t>(l.d) * sizeof(float);
    backend_->Upload(out.emb, rows.embeddings, static_cast<size_t>(rows.num_refs) * row_bytes);
    if (pad_refs > 0)
      backend_->Upload(out.emb + rows.num_refs * l.d, Zeros(pad_refs * row_bytes),
                       static_cast<size_t>(pad_refs) * row_bytes);
    return out;
  }
  const auto pb = static_cast<int64_t>(l.packed_bytes);
  void* packed = buf_.packed[slot].get();
  int32_t* ref = buf_.ref[slot].get<int32_t>();
  backend_->Upload(ref, rows.ref, static_cast<size_t>(rows.num_refs) * sizeof(int32_t));
  if (pad_refs > 0)
    backend_->Upload(ref + rows.num_refs, Zeros(pad_refs * sizeof(int32_t)),
                     static_cast<size_t>(pad_refs) * sizeof(int32_t));
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
  out.dequant = true;
  return out;
}

void Model::IssueEngram(int slot, const StagedRows& staged, bool want_y) {
  const ModelConfig& c = config();
  const EngramConfig& e = c.engram;
  const EngramWeights& w = weights_.engram[slot];
  const int D = c.hidden_size, M = c.hc_mult;
  const int64_t T = ptr_.rows;
  const int64_t C = static_cast<int64_t>(M) * D;

  const float* emb = staged.host_emb != nullptr ? staged.host_emb : staged.emb;
  if (staged.dequant) {
    const TableLayout& l = prefetcher_->store(slot).layout();
    backend_->DequantRows(buf_.packed[slot].get(), static_cast<int64_t>(l.packed_bytes), l.dtype,
                          l.d, buf_.ref[slot].get<int32_t>(), staged.refs, staged.emb);
  }

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
}

}  // namespace engram
