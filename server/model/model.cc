#include "server/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engram/kernels/check.h"
#include "server/model/model_tables.h"
#include "server/model/upload_blob.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {

Model::Model(std::unique_ptr<ModelFiles> files, Backend* backend)
    : files_(std::move(files)), backend_(backend) {}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(std::unique_ptr<ModelFiles> files,
                                                   std::vector<int64_t> compress, Backend* backend,
                                                   const EngramMemoryOptions& memory) {
  const ModelConfig& c = files->config();
  if (static_cast<int64_t>(compress.size()) != c.vocab_size)
    return absl::InvalidArgumentError(StrCat(files->dir(), ": compressed-id table has ",
                                             compress.size(), " entries, vocab_size is ",
                                             c.vocab_size));
  std::unique_ptr<Model> m(new Model(std::move(files), backend));
  ASSIGN_OR_RETURN(m->weights_, LoadWeights(*m->files_, backend));
  std::vector<std::unique_ptr<TableStore>> stores;
  const bool engram_on = memory.enabled && c.engram.enabled();
  // Per-table options name a layer: its Engram table, or its own product-key values table.
  ProductKeyMemoryOptions pk = memory.product_key;
  pk.store = memory.store;
  for (const auto& [layer, opt] : memory.per_layer) {
    if (c.engram.SlotOf(layer) >= 0) continue;
    if (c.product_key.table_files.count(std::to_string(layer)) != 0) {
      pk.per_table.emplace(std::to_string(layer), opt);
      continue;
    }
    std::string ids;
    for (int l : c.engram.layer_ids) ids += StrCat(ids.empty() ? "" : ", ", l);
    for (const auto& [key, f] : c.product_key.table_files)
      ids += StrCat(ids.empty() ? "" : ", ", key, " (product-key values)");
    return absl::InvalidArgumentError(StrCat(
        "--memory-tier/--memory-cache-bytes name layer ", layer,
        ", which has no memory table of its own (memory tables: ", ids.empty() ? "none" : ids,
        ")"));
  }
  std::vector<TableStoreOptions> per_slot;
  for (int layer : c.engram.layer_ids) per_slot.push_back(memory.ForLayer(layer));
  // Every memory table of every kind is checked against free memory before the first loads.
  std::vector<std::pair<ModelTable, TableStoreOptions>> tables =
      ProductKeyMemory::Tables(*m->files_, pk);
  for (size_t slot = 0; engram_on && slot < c.engram.layer_ids.size(); ++slot)
    tables.emplace_back(EngramTable(*m->files_, static_cast<int>(slot)), per_slot[slot]);
  RETURN_IF_ERROR(CheckTableStoresFit(tables));
  for (const auto& [key, opt] : pk.per_table)
    if (c.product_key.table_files.count(key) == 0) {
      std::string keys;
      for (const auto& [k, f] : c.product_key.table_files)
        keys += StrCat(keys.empty() ? "" : ", ", k);
      return absl::InvalidArgumentError(StrCat(
          "--memory-tier/--memory-cache-bytes name product-key table '", key,
          "', which the model does not have (its values tables: ", keys.empty() ? "none" : keys,
          ")"));
    }
  if (c.product_key.enabled()) {
    ASSIGN_OR_RETURN(m->product_key_, ProductKeyMemory::Open(*m->files_, m->weights_, backend, pk));
  }
  for (size_t slot = 0; engram_on && slot < c.engram.layer_ids.size(); ++slot) {
    ASSIGN_OR_RETURN(auto store,
                     OpenTableStore(*m->files_, static_cast<int>(slot), per_slot[slot]));
    stores.push_back(std::move(store));
  }
  ASSIGN_OR_RETURN(
      m->engram_,
      EngramMemory::Open(*m->files_, m->weights_, backend, std::move(compress), std::move(stores),
                         memory.prefetch, memory.row_path, memory.device_cache_bytes));
  const int half = c.head_dim / 2;
  for (int i = 0; i < half; ++i)
    m->inv_freq_host_.push_back(static_cast<float>(
        std::pow(static_cast<double>(c.rope_theta), -2.0 * i / static_cast<double>(c.head_dim))));
  m->inv_freq_ = backend->Resident(m->inv_freq_host_.data(), half);
  return m;
}

void Model::ResetState(SequenceState& s) const {
  s.num_cached = 0;
  s.compressed_tail.clear();
}

StepTokens Model::CollectStepTokens(std::span<const StepEntry> step) const {
  StepTokens out;
  for (const StepEntry& e : step) {
    out.tails.push_back(e.state->compressed_tail);
    out.tokens.emplace_back(e.tokens.begin(), e.tokens.end());
  }
  return out;
}

template <typename Self, typename F>
void Model::ForEachStepBuffer(Self& self, int64_t T, int64_t R, F&& f) {
  const ModelConfig& c = self.config();
  auto& buf = self.buf_;
  const int64_t D = c.hidden_size, M = c.hc_mult, fs = sizeof(float);
  f(buf.x, T * D * fs);
  f(buf.h, T * M * D * fs);
  f(buf.xn, std::max(T, R) * D * fs);
  f(buf.q, T * c.num_attention_heads * c.head_dim * fs);
  f(buf.k, T * c.num_key_value_heads * c.head_dim * fs);
  f(buf.v, T * c.num_key_value_heads * c.head_dim * fs);
  f(buf.att, T * c.num_attention_heads * c.head_dim * fs);
  f(buf.o, T * D * fs);
  f(buf.g, T * c.intermediate_size * fs);
  f(buf.u, T * c.intermediate_size * fs);
  f(buf.logits, R * c.vocab_size * fs);
}

bool Model::ReserveStepBuffers(int64_t T, int64_t R, bool want_y) {
  bool moved = false;
  ForEachStepBuffer(*this, T, R, [&](BackendBuffer& b, int64_t bytes) {
    const size_t before = b.bytes();
    b.Reserve(backend_, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
    moved |= b.bytes() != before;
  });
  if (product_key_ != nullptr) moved |= product_key_->ReserveStep(T);
  moved |= engram_->ReserveStep(T, graphs_on_, want_y);
  return moved;
}

uint64_t Model::StepBytes(int64_t T, int64_t R, int block_size) const {
  uint64_t total = 0;
  ForEachStepBuffer(*this, T, R, [&](const BackendBuffer&, int64_t bytes) {
    total += static_cast<uint64_t>(std::max<int64_t>(bytes, 1));
  });
  if (product_key_ != nullptr) total += product_key_->StepBytes(T);
  total += engram_->StepBytes(T, graphs_on_, /*want_y=*/false);
  const int64_t stride = (config().max_position_embeddings + block_size - 1) / block_size;
  total += MetaBytes(std::min(T, R), T, stride, R);
  if (graphs_on_) total += GraphMetaBytes(block_size);
  return total;
}

uint64_t Model::MetaBytes(int64_t seqs, int64_t rows, int64_t stride, int64_t logit_rows) const {
  // UploadStepMeta's sections: ids, positions, row_begin, pos_begin, block tables, logit rows,
  // each 16-byte aligned; then the memory layers' own.
  const auto bytes =
      rows * 4 + rows * 8 + (seqs + 1) * 4 + seqs * 8 + seqs * stride * 4 + logit_rows * 4 + 6 * 16;
  return static_cast<uint64_t>(bytes) + engram_->MetaBytes(rows);
}

uint64_t Model::GraphMetaBytes(int block_size) const {
  const int64_t stride = (config().max_position_embeddings + block_size - 1) / block_size;
  const int64_t seqs = graph_batches_.empty() ? 0 : graph_batches_.back();
  return MetaBytes(seqs, seqs, stride, seqs);
}

void Model::UploadStepMeta(std::span<const StepEntry> step, const std::vector<int32_t>& row_begin,
                           const std::vector<int32_t>& logit_rows, int stride, int64_t max_context,
                           int32_t pad_block, BackendBuffer& dst) {
  const int64_t T = row_begin.back();
  const size_t num_seqs = row_begin.size() - 1;
  std::vector<int32_t> ids, tables(num_seqs * static_cast<size_t>(stride), pad_block);
  std::vector<int64_t> pos, pos_begin;
  for (size_t i = 0; i < num_seqs; ++i) {
    if (i >= step.size()) {  // padding: token 0 at position 0
      ids.push_back(0);
      pos.push_back(0);
      pos_begin.push_back(0);
      continue;
    }
    const SequenceState& st = *step[i].state;
    ids.insert(ids.end(), step[i].tokens.begin(), step[i].tokens.end());
    for (size_t j = 0; j < step[i].tokens.size(); ++j)
      pos.push_back(st.num_cached + static_cast<int64_t>(j));
    pos_begin.push_back(st.num_cached);
    // A graph's stride covers its context bucket; blocks reserved beyond it are not read.
    const size_t n = std::min(st.block_table.size(), static_cast<size_t>(stride));
    std::copy_n(st.block_table.begin(), n, tables.begin() + i * stride);
  }

  UploadBlob blob;
  const size_t o_ids = blob.Add(ids), o_pos = blob.Add(pos), o_rb = blob.Add(row_begin);
  const size_t o_pb = blob.Add(pos_begin), o_tab = blob.Add(tables), o_lr = blob.Add(logit_rows);
  std::vector<EngramStepSeq> seqs;
  for (size_t i = 0; i < step.size(); ++i)
    seqs.push_back({step[i].state, row_begin[i], row_begin[i + 1]});
  engram_->AddStepMeta(seqs, T, blob);
  char* base = blob.UploadTo(backend_, dst);
  engram_->BindStepMeta(base);
  ptr_.rows = T;
  ptr_.ids = reinterpret_cast<const int32_t*>(base + o_ids);
  ptr_.pos = reinterpret_cast<const int64_t*>(base + o_pos);
  ptr_.logit_rows = reinterpret_cast<const int32_t*>(base + o_lr);
  ptr_.attention.num_seqs = static_cast<int>(num_seqs);
  ptr_.attention.num_rows = T;
  ptr_.attention.row_begin = reinterpret_cast<const int32_t*>(base + o_rb);
  ptr_.attention.pos_begin = reinterpret_cast<const int64_t*>(base + o_pb);
  ptr_.attention.block_tables = reinterpret_cast<const int32_t*>(base + o_tab);
  ptr_.attention.block_table_stride = stride;
  ptr_.attention.max_context = max_context;
}

absl::Status Model::Forward(std::span<const StepEntry> step, KvCache& kv, ForwardOutput* out,
                            const ForwardDump* dump, bool download_logits) {
  const ModelConfig& c = config();
  const int D = c.hidden_size, M = c.hc_mult;
  const size_t num_slots = c.engram.layer_ids.size();
  const int64_t C = static_cast<int64_t>(M) * D;
  const bool engram_on = engram_->on();

  // Validate the step before touching any state.
  std::vector<int32_t> row_begin{0};
  int stride = 1;
  int64_t max_context = 0;
  for (size_t i = 0; i < step.size(); ++i) {
    const StepEntry& e = step[i];
    if (e.tokens.empty())
      return absl::InvalidArgumentError(StrCat("step entry ", i, ": no tokens"));
    for (int32_t t : e.tokens)
      if (t < 0 || t >= c.vocab_size)
        return absl::InvalidArgumentError(
            StrCat("token id ", t, " outside [0, ", c.vocab_size, ")"));
    const int64_t end = e.state->num_cached + static_cast<int64_t>(e.tokens.size());
    if (end > c.max_position_embeddings)
      return absl::OutOfRangeError(StrCat("sequence of ", end,
                                          " tokens exceeds max_position_embeddings ",
                                          c.max_position_embeddings));
    if (static_cast<int64_t>(e.state->block_table.size()) * kv.block_size() < end)
      return absl::FailedPreconditionError(StrCat("step entry ", i, ": KV blocks for ",
                                                  e.state->block_table.size() * kv.block_size(),
                                                  " positions, needs ", end));
    row_begin.push_back(row_begin.back() + static_cast<int32_t>(e.tokens.size()));
    stride = std::max(stride, static_cast<int>(e.state->block_table.size()));
    max_context = std::max(max_context, end);
  }
  for (const StepEntry& e : step) engram_->ReserveSequenceState(*e.state);

  // Logits only for the rows asked for: the last token of each entry unless all_logits.
  std::vector<int32_t> logit_rows;
  out->first_row.assign(1, 0);
  for (size_t i = 0; i < step.size(); ++i) {
    const int32_t first = step[i].all_logits ? row_begin[i] : row_begin[i + 1] - 1;
    for (int32_t r = first; r < row_begin[i + 1]; ++r) logit_rows.push_back(r);
    out->first_row.push_back(static_cast<int32_t>(logit_rows.size()));
  }
  const int64_t real_logit_rows = static_cast<int64_t>(logit_rows.size());

  // A graph step computes its padding sequences too (one row each, logits included), so that
  // every size and address matches the recording.
  const std::optional<GraphShape> shape = GraphShapeFor(step, kv, dump);
  if (shape.has_value()) {
    for (int s = static_cast<int>(step.size()); s < shape->batch; ++s) {
      row_begin.push_back(row_begin.back() + 1);
      logit_rows.push_back(row_begin.back() - 1);
    }
    stride = shape->stride;
    max_context = shape->context;
  }
  const int64_t T = row_begin.back();
  const int64_t R = static_cast<int64_t>(logit_rows.size());
  if (ReserveStepBuffers(T, R, dump != nullptr && dump->engram_output != nullptr))
    graphs_.clear();  // they point at the buffers that just moved
  GraphSet* graphs = shape.has_value() ? GraphsFor(*shape, kv) : nullptr;
  UploadStepMeta(step, row_begin, logit_rows, stride, max_context, kv.pad_block(),
                 shape.has_value() ? buf_.graph_meta : buf_.meta);

  // The lookup starts now and runs while the embedding and the blocks before the first Engram
  // layer compute.
  const EngramPrefetcher::Ticket ticket = engram_on ? engram_->Submit(CollectStepTokens(step)) : 0;

  // The step in segments that end where the host must act: before each Engram layer it waits
  // for the prefetcher and copies the layer's rows in; inside a product-key block whose rows
  // the backend cannot read in place, it fetches the rows the chooser picked. Each memory
  // layer says where its cuts are; each segment is one graph launch.
  struct Cut {
    int block;
    bool engram;  // before the block (Engram), else inside it after the chooser (product key)
  };
  std::vector<Cut> cuts;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    if (engram_on && lw.engram_slot >= 0) cuts.push_back({l, true});
    if (lw.product_key_slot >= 0 && product_key_->host_fetch(lw.product_key_slot))
      cuts.push_back({l, false});
  }
  const int L = c.num_hidden_layers;
  bool all_graphs = graphs != nullptr;
  size_t seg = 0;
  // Where the segment after cut i ends: the next cut, or the head.
  auto issue_until = [&](size_t i, int from) {
    const bool last = i + 1 >= cuts.size();
    const int to = last ? L : cuts[i + 1].block;
    IssueLayers(from, to, kv, !last && !cuts[i + 1].engram, dump);
    if (last) IssueHead(R);
  };
  IssueSegment(graphs, seg++, &all_graphs, [&] {
    // Residual stream: M branches, all starting from the embedding.
    backend_->Embedding(weights_.embed, ptr_.ids, T, buf_.x.get<float>());
    backend_->BroadcastBranches(buf_.x.get<float>(), T, M, D, buf_.h.get<float>());
    const bool none = cuts.empty();
    IssueLayers(0, none ? L : cuts[0].block, kv, !none && !cuts[0].engram, dump);
    if (none) IssueHead(R);
  });
  for (size_t i = 0; i < cuts.size(); ++i) {
    const int l = cuts[i].block;
    if (!cuts[i].engram) {
      const int slot = weights_.layers[l].product_key_slot;
      if (absl::Status st = product_key_->Fetch(slot, T); !st.ok()) {
        backend_->Synchronize();
        if (engram_on) engram_->Finish(ticket);  // the states do not advance
        return st;
      }
      IssueSegment(graphs, seg++, &all_graphs, [&] {
        IssueProductKeyRead(l, dump);
        issue_until(i, l + 1);
      });
      continue;
    }
    const int slot = weights_.layers[l].engram_slot;
    if (dump != nullptr && dump->engram_layer == l && dump->engram_input != nullptr) {
      dump->engram_input->resize(T * C);
      backend_->Download(dump->engram_input->data(), buf_.h.get(), T * C * sizeof(float));
    }
    absl::StatusOr<EngramMemory::Staged> staged =
        engram_->Stage(ticket, slot, T, graphs != nullptr);
    if (!staged.ok()) {
      backend_->Synchronize();
      engram_->Finish(ticket);  // the states do not advance
      return staged.status();
    }
    const bool want_y =
        dump != nullptr && dump->engram_layer == l && dump->engram_output != nullptr;
    IssueSegment(graphs, seg++, &all_graphs, [&] {
      engram_->Issue(slot, *staged, T, buf_.h.get<float>(), want_y);
      issue_until(i, l);
    });
    // The layers after the module touch neither the conv output nor the gates.
    if (want_y) {
      dump->engram_output->resize(T * C);
      backend_->Download(dump->engram_output->data(), engram_->conv_output(),
                         T * C * sizeof(float));
    }
    if (dump != nullptr && dump->gates != nullptr) {
      dump->gates->resize(num_slots);
      (*dump->gates)[slot].resize(T * M);
      backend_->Download((*dump->gates)[slot].data(), engram_->gates(), T * M * sizeof(float));
    }
  }
  for (size_t i = 0; i < c.product_key.layer_ids.size(); ++i) product_key_->CountRead(T);
  if (graphs != nullptr) {
    graphs->warm = true;
    if (all_graphs) graph_steps_.fetch_add(1, std::memory_order_relaxed);
  }

  out->backend_logits = buf_.logits.get<float>();
  if (download_logits) {
    out->logits.resize(real_logit_rows * c.vocab_size);
    backend_->Download(out->logits.data(), buf_.logits.get(), out->logits.size() * sizeof(float));
  } else {
    out->logits.clear();
  }

  const StepRows rows = engram_on ? engram_->Finish(ticket) : StepRows{};
  AdvanceStates(step, rows);
  return absl::OkStatus();
}

void Model::IssueAttention(int l, KvCache& kv) {
  const ModelConfig& c = config();
  const int D = c.hidden_size, M = c.hc_mult, hd = c.head_dim;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t T = ptr_.rows;
  float* x = buf_.x.get<float>();
  float* h = buf_.h.get<float>();
  float* xn = buf_.xn.get<float>();
  float* q = buf_.q.get<float>();
  float* k = buf_.k.get<float>();
  float* v = buf_.v.get<float>();
  float* att = buf_.att.get<float>();
  float* o = buf_.o.get<float>();
  const LayerWeights& lw = weights_.layers[l];
  backend_->BranchMean(h, T, M, D, x);
  backend_->RmsNorm(x, T, D, lw.input_norm, c.rms_norm_eps, xn);
  backend_->Linear(xn, T, lw.q, nullptr, q);
  backend_->Linear(xn, T, lw.k, nullptr, k);
  backend_->Linear(xn, T, lw.v, nullptr, v);
  backend_->Rope(q, T, nh, hd, ptr_.pos, inv_freq_);
  backend_->Rope(k, T, nkv, hd, ptr_.pos, inv_freq_);
  backend_->Attention(ptr_.attention, kv.layer(l), q, k, v, nh, att);
  backend_->Linear(att, T, lw.o, nullptr, o);
  backend_->AddToBranches(o, T, M, D, h);
}

void Model::IssueLayers(int l0, int l1, KvCache& kv, bool stop_in_l1, const ForwardDump* dump) {
  const ModelConfig& c = config();
  const int D = c.hidden_size, M = c.hc_mult;
  const int64_t T = ptr_.rows;
  float* x = buf_.x.get<float>();
  float* h = buf_.h.get<float>();
  float* xn = buf_.xn.get<float>();
  float* o = buf_.o.get<float>();
  float* g = buf_.g.get<float>();
  float* u = buf_.u.get<float>();
  for (int l = l0; l < l1; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    IssueAttention(l, kv);
    if (lw.product_key_slot >= 0) {  // read in place: no cut
      IssueProductKeyChoose(l, dump);
      IssueProductKeyRead(l, dump);
      continue;
    }
    backend_->BranchMean(h, T, M, D, x);
    backend_->RmsNorm(x, T, D, lw.post_norm, c.rms_norm_eps, xn);
    backend_->Linear(xn, T, lw.gate, nullptr, g);
    backend_->Linear(xn, T, lw.up, nullptr, u);
    backend_->SwiGlu(g, u, T * c.intermediate_size, g);
    backend_->Linear(g, T, lw.down, nullptr, o);
    backend_->AddToBranches(o, T, M, D, h);
  }
  if (stop_in_l1) {
    IssueAttention(l1, kv);
    IssueProductKeyChoose(l1, dump);
  }
}

// Dumps download inside the ops: a step with a dump never runs as a graph (GraphShapeFor).
void Model::IssueProductKeyChoose(int l, const ForwardDump* dump) {
  const ModelConfig& c = config();
  const int D = c.hidden_size;
  const int64_t T = ptr_.rows;
  const LayerWeights& lw = weights_.layers[l];
  float* h = buf_.h.get<float>();
  float* xn = buf_.xn.get<float>();
  const bool dumped = dump != nullptr && dump->memory_layer == l;
  if (dumped && dump->memory_input != nullptr) {
    dump->memory_input->resize(T * D);
    backend_->Download(dump->memory_input->data(), h, T * D * sizeof(float));
  }
  // hc_mult is 1 with product-key memory (config validation): h is the stream itself.
  backend_->RmsNorm(h, T, D, lw.post_norm, c.rms_norm_eps, xn);
  product_key_->IssueChoose(lw.product_key_slot, xn, T);
  if (dumped && dump->memory_indices != nullptr) {
    dump->memory_indices->resize(T * c.product_key.heads * c.product_key.knn);
    backend_->Download(dump->memory_indices->data(), product_key_->indices(),
                       dump->memory_indices->size() * sizeof(int64_t));
  }
}

void Model::IssueProductKeyRead(int l, const ForwardDump* dump) {
  const int D = config().hidden_size;
  const int64_t T = ptr_.rows;
  const int slot = weights_.layers[l].product_key_slot;
  product_key_->IssueRead(slot, T, buf_.h.get<float>());
  if (dump != nullptr && dump->memory_layer == l && dump->memory_output != nullptr) {
    dump->memory_output->resize(T * D);
    backend_->Download(dump->memory_output->data(), product_key_->output(slot),
                       T * D * sizeof(float));
  }
}

void Model::IssueHead(int64_t R) {
  const ModelConfig& c = config();
  const int D = c.hidden_size, M = c.hc_mult;
  float* x = buf_.x.get<float>();
  float* xn = buf_.xn.get<float>();
  backend_->BranchMean(buf_.h.get<float>(), ptr_.rows, M, D, x);
  backend_->GatherRows(x, ptr_.logit_rows, R, D, xn);
  backend_->RmsNorm(xn, R, D, weights_.final_norm, c.rms_norm_eps, xn);
  backend_->Linear(xn, R, weights_.lm_head, nullptr, buf_.logits.get<float>());
}

void Model::AdvanceStates(std::span<const StepEntry> step, const StepRows& rows) {
  for (size_t i = 0; i < step.size(); ++i) {
    SequenceState& s = *step[i].state;
    s.num_cached += static_cast<int64_t>(step[i].tokens.size());
    if (engram_->on()) engram_->Advance(s, rows.compressed[i]);
  }
}

}  // namespace engram
