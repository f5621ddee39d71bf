#include "server/model/model.h"

#include <algorithm>
#include <cmath>

#include "engram/kernels/check.h"
#include "server/util/status_macros.h"
#include "server/util/str_cat.h"

namespace engram {

Model::Model(std::unique_ptr<ModelFiles> files, Backend* backend)
    : files_(std::move(files)), backend_(backend), hasher_(files_->config().engram) {}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(std::unique_ptr<ModelFiles> files,
                                                   std::vector<int64_t> compress, Backend* backend,
                                                   const EngramMemoryOptions& memory) {
  const ModelConfig& c = files->config();
  if (static_cast<int64_t>(compress.size()) != c.vocab_size)
    return absl::InvalidArgumentError(StrCat(files->dir(), ": compressed-id table has ",
                                             compress.size(), " entries, vocab_size is ",
                                             c.vocab_size));
  std::unique_ptr<Model> m(new Model(std::move(files), backend));
  ASSIGN_OR_RETURN(m->weights_, LoadWeights(*m->files_));
  std::vector<std::unique_ptr<TableStore>> stores;
  m->engram_on_ = memory.enabled && c.engram.enabled();
  // Every table is checked against free memory before the first one loads.
  for (const auto& [layer, opt] : memory.per_layer)
    if (c.engram.SlotOf(layer) < 0) {
      std::string ids;
      for (int l : c.engram.layer_ids) ids += StrCat(ids.empty() ? "" : ", ", l);
      return absl::InvalidArgumentError(
          StrCat("--engram-tier/--engram-cache-bytes name layer ", layer,
                 ", which has no Engram module (Engram layers: ", ids.empty() ? "none" : ids, ")"));
    }
  std::vector<TableStoreOptions> per_slot;
  for (int layer : c.engram.layer_ids) per_slot.push_back(memory.ForLayer(layer));
  if (m->engram_on_) RETURN_IF_ERROR(CheckTableStoresFit(*m->files_, per_slot));
  for (size_t slot = 0; m->engram_on_ && slot < c.engram.layer_ids.size(); ++slot) {
    ASSIGN_OR_RETURN(auto store,
                     OpenTableStore(*m->files_, static_cast<int>(slot), per_slot[slot]));
    stores.push_back(std::move(store));
  }
  m->compress_ = std::move(compress);
  if (c.engram.enabled()) m->compressed_pad_ = m->compress_[c.engram.pad_id];
  m->prefetcher_ = std::make_unique<EngramPrefetcher>(m->hasher_, m->compress_, m->compressed_pad_,
                                                      std::move(stores), memory.prefetch);
  const int half = c.head_dim / 2;
  for (int i = 0; i < half; ++i)
    m->inv_freq_.push_back(static_cast<float>(
        std::pow(static_cast<double>(c.rope_theta), -2.0 * i / static_cast<double>(c.head_dim))));
  return m;
}

void Model::ResetState(SequenceState& s) const {
  s.num_cached = 0;
  s.compressed_tail.clear();
  s.conv_history.assign(config().engram.layer_ids.size(), {});
}

StepTokens Model::CollectStepTokens(std::span<const StepEntry> step) const {
  StepTokens out;
  for (const StepEntry& e : step) {
    out.tails.push_back(e.state->compressed_tail);
    out.tokens.emplace_back(e.tokens.begin(), e.tokens.end());
  }
  return out;
}

absl::Status Model::Forward(std::span<const StepEntry> step, KvCache& kv, ForwardOutput* out,
                            const ForwardDump* dump) {
  const ModelConfig& c = config();
  const int D = c.hidden_size, M = c.engram.hc_mult, hd = c.head_dim;
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int num_slots = static_cast<int>(c.engram.layer_ids.size());

  // Validate the step before touching any state.
  std::vector<int32_t> row_begin{0};
  std::vector<int64_t> pos_begin;
  std::vector<const int32_t*> tables;
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
    if (static_cast<int>(e.state->conv_history.size()) != num_slots)
      e.state->conv_history.resize(num_slots);
    row_begin.push_back(row_begin.back() + static_cast<int32_t>(e.tokens.size()));
    pos_begin.push_back(e.state->num_cached);
    tables.push_back(e.state->block_table.data());
  }
  const int64_t T = row_begin.back();
  std::vector<int32_t> ids;
  std::vector<int64_t> pos;
  for (size_t i = 0; i < step.size(); ++i) {
    ids.insert(ids.end(), step[i].tokens.begin(), step[i].tokens.end());
    for (size_t j = 0; j < step[i].tokens.size(); ++j)
      pos.push_back(pos_begin[i] + static_cast<int64_t>(j));
  }

  // The lookup starts now and runs while the embedding and the blocks before the first Engram
  // layer compute.
  const EngramPrefetcher::Ticket ticket =
      engram_on_ ? prefetcher_->Submit(CollectStepTokens(step)) : 0;
  step_z_.assign(num_slots, {});

  // Residual stream: M branches, all starting from the embedding.
  std::vector<float> x(T * D), h(T * M * D), xn(T * D);
  backend_->Embedding(weights_.embed, ids.data(), T, x.data());
  for (int64_t t = 0; t < T; ++t)
    for (int m = 0; m < M; ++m) std::copy_n(x.data() + t * D, D, h.data() + (t * M + m) * D);

  // x = mean over branches (exactly the stream itself when M == 1).
  auto branch_mean = [&](std::vector<float>& dst) {
    if (M == 1) {
      std::copy(h.begin(), h.end(), dst.begin());
      return;
    }
    for (int64_t t = 0; t < T; ++t)
      for (int j = 0; j < D; ++j) {
        float s = 0.f;
        for (int m = 0; m < M; ++m) s += h[(t * M + m) * D + j];
        dst[t * D + j] = s / static_cast<float>(M);
      }
  };
  auto add_to_branches = [&](const std::vector<float>& delta) {
    for (int64_t t = 0; t < T; ++t)
      for (int m = 0; m < M; ++m) {
        float* dst = h.data() + (t * M + m) * D;
        const float* src = delta.data() + t * D;
        for (int j = 0; j < D; ++j) dst[j] += src[j];
      }
  };

  std::vector<float> q(T * nh * hd), k(T * nkv * hd), v(T * nkv * hd), att(T * nh * hd), o(T * D);
  std::vector<float> g(T * c.intermediate_size), u(T * c.intermediate_size);
  AttentionBatch ab;
  ab.num_seqs = static_cast<int>(step.size());
  ab.row_begin = row_begin.data();
  ab.pos_begin = pos_begin.data();
  ab.block_tables = tables.data();

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    if (lw.engram_slot >= 0 && engram_on_) {
      if (dump != nullptr && dump->engram_layer == l && dump->engram_input != nullptr)
        *dump->engram_input = h;
      if (absl::Status st = RunEngram(lw.engram_slot, ticket, step, row_begin, h, dump); !st.ok()) {
        prefetcher_->Finish(ticket);  // the states do not advance: the step can be retried
        return st;
      }
    }
    branch_mean(x);
    backend_->RmsNorm(x.data(), T, D, lw.input_norm.data(), c.rms_norm_eps, xn.data());
    backend_->Linear(xn.data(), T, lw.q, nullptr, q.data());
    backend_->Linear(xn.data(), T, lw.k, nullptr, k.data());
    backend_->Linear(xn.data(), T, lw.v, nullptr, v.data());
    backend_->Rope(q.data(), T, nh, hd, pos.data(), inv_freq_.data());
    backend_->Rope(k.data(), T, nkv, hd, pos.data(), inv_freq_.data());
    backend_->Attention(ab, kv.layer(l), q.data(), k.data(), v.data(), nh, att.data());
    backend_->Linear(att.data(), T, lw.o, nullptr, o.data());
    add_to_branches(o);

    branch_mean(x);
    backend_->RmsNorm(x.data(), T, D, lw.post_norm.data(), c.rms_norm_eps, xn.data());
    backend_->Linear(xn.data(), T, lw.gate, nullptr, g.data());
    backend_->Linear(xn.data(), T, lw.up, nullptr, u.data());
    backend_->SwiGlu(g.data(), u.data(), T * c.intermediate_size, g.data());
    backend_->Linear(g.data(), T, lw.down, nullptr, o.data());
    add_to_branches(o);
  }

  const StepRows rows = engram_on_ ? prefetcher_->Finish(ticket) : StepRows{};

  // Logits only for the rows asked for: the last token of each entry unless all_logits.
  std::vector<int64_t> logit_rows;
  out->first_row.assign(1, 0);
  for (size_t i = 0; i < step.size(); ++i) {
    const int32_t first = step[i].all_logits ? row_begin[i] : row_begin[i + 1] - 1;
    for (int32_t r = first; r < row_begin[i + 1]; ++r) logit_rows.push_back(r);
    out->first_row.push_back(static_cast<int32_t>(logit_rows.size()));
  }
  branch_mean(x);
  const int64_t R = static_cast<int64_t>(logit_rows.size());
  std::vector<float> sel(R * D);
  for (int64_t i = 0; i < R; ++i) std::copy_n(x.data() + logit_rows[i] * D, D, sel.data() + i * D);
  backend_->RmsNorm(sel.data(), R, D, weights_.final_norm.data(), c.rms_norm_eps, sel.data());
  out->logits.resize(R * c.vocab_size);
  backend_->Linear(sel.data(), R, weights_.lm_head, nullptr, out->logits.data());

  AdvanceStates(step, rows, step_z_, row_begin);
  return absl::OkStatus();
}

void Model::AdvanceStates(std::span<const StepEntry> step, const StepRows& rows,
                          const std::vector<std::vector<float>>& z_by_slot,
                          const std::vector<int32_t>& row_begin) {
  const EngramConfig& e = config().engram;
  const size_t keep_ids = static_cast<size_t>(e.max_ngram_size - 1);
  const int64_t C = static_cast<int64_t>(e.hc_mult) * config().hidden_size;
  const int64_t keep_rows = static_cast<int64_t>(e.kernel_size - 1) * e.max_ngram_size;
  for (size_t i = 0; i < step.size(); ++i) {
    SequenceState& s = *step[i].state;
    s.num_cached += static_cast<int64_t>(step[i].tokens.size());
    if (!engram_on_) continue;
    auto& tail = s.compressed_tail;
    tail.insert(tail.end(), rows.compressed[i].begin(), rows.compressed[i].end());
    if (tail.size() > keep_ids)
      tail.erase(tail.begin(), tail.end() - static_cast<std::ptrdiff_t>(keep_ids));
    for (size_t slot = 0; slot < z_by_slot.size(); ++slot) {
      auto& hist = s.conv_history[slot];
      const float* z = z_by_slot[slot].data();
      hist.insert(hist.end(), z + row_begin[i] * C, z + row_begin[i + 1] * C);
      const int64_t have = static_cast<int64_t>(hist.size()) / C;
      if (have > keep_rows) hist.erase(hist.begin(), hist.begin() + (have - keep_rows) * C);
    }
  }
}

}  // namespace engram
