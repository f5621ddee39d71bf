// The Engram module of one layer for a whole step (DESIGN §2.1 steps 5-8): gather the hashed
// rows, project to keys and value, gate per branch, then the causal short conv whose earlier
// inputs come from this step's rows or from each sequence's history.
#include <algorithm>

#include "engram/kernels/check.h"
#include "server/model/model.h"

namespace engram {

absl::Status Model::RunEngram(int slot, EngramPrefetcher::Ticket ticket,
                              std::span<const StepEntry> step,
                              const std::vector<int32_t>& row_begin, std::vector<float>& h,
                              const ForwardDump* dump) {
  const ModelConfig& c = config();
  const EngramConfig& e = c.engram;
  const EngramWeights& w = weights_.engram[slot];
  const int D = c.hidden_size, M = e.hc_mult, N = e.max_ngram_size, kw = e.kernel_size;
  const int64_t T = row_begin.back();
  const int64_t C = static_cast<int64_t>(M) * D;

  // (N-1)*H rows of d values per token, concatenated: exactly e_t of length (N-1)*E. This is the
  // only place the forward pass waits for the prefetcher.
  absl::StatusOr<const float*> fetched = prefetcher_->Wait(ticket, slot);
  if (!fetched.ok()) return fetched.status();
  const float* emb = *fetched;

  std::vector<float> value(T * D), keys(M * T * D), gates(T * M), gated(T * C);
  backend_->Linear(emb, T, w.value_proj, w.value_bias.data(), value.data());
  for (int m = 0; m < M; ++m)
    backend_->Linear(emb, T, w.key_proj[m], w.key_bias[m].data(), keys.data() + m * T * D);

  EngramGateParams gp;
  gp.rows = T;
  gp.hidden = D;
  gp.branches = M;
  gp.hidden_in = h.data();
  gp.keys = keys.data();
  gp.value = value.data();
  gp.key_norm = w.key_norm_ptrs.data();
  gp.query_norm = w.query_norm_ptrs.data();
  gp.gates = gates.data();
  gp.gated = gated.data();
  backend_->EngramGate(gp);

  std::vector<float>& z = step_z_[slot];
  z.resize(T * C);
  backend_->RmsNormBranches(gated.data(), T, M, D, w.conv_norm_ptrs.data(), 1e-5f, z.data());

  // Taps: z at t - (w-1-i)*N for i < w-1, from this step when the time falls inside it, else
  // from the sequence's history (which holds the latest rows before this step), else zero.
  std::vector<const float*> taps(T * (kw - 1), nullptr);
  for (size_t s = 0; s < step.size(); ++s) {
    const SequenceState& st = *step[s].state;
    const int64_t t0 = st.num_cached;
    const auto& hist = st.conv_history[slot];
    const int64_t hist_rows = static_cast<int64_t>(hist.size()) / C;
    for (int32_t r = row_begin[s]; r < row_begin[s + 1]; ++r) {
      const int64_t t = t0 + (r - row_begin[s]);
      for (int i = 0; i < kw - 1; ++i) {
        const int64_t tau = t - static_cast<int64_t>(kw - 1 - i) * N;
        const float* p = nullptr;
        if (tau >= t0) {
          p = z.data() + (row_begin[s] + (tau - t0)) * C;
        } else if (tau >= 0) {
          const int64_t idx = tau - (t0 - hist_rows);
          ENGRAM_CHECK_MSG(idx >= 0, "conv history too short: %lld rows for time %lld at %lld",
                           static_cast<long long>(hist_rows), static_cast<long long>(tau),
                           static_cast<long long>(t0));
          p = hist.data() + idx * C;
        }
        taps[r * (kw - 1) + i] = p;
      }
    }
  }

  std::vector<float> y(T * C);
  ShortConvParams cp;
  cp.rows = T;
  cp.channels = static_cast<int>(C);
  cp.kernel = kw;
  cp.weight = w.conv_weight.data();
  cp.z = z.data();
  cp.taps = taps.data();
  cp.gated = gated.data();
  cp.out = y.data();
  backend_->ShortConv(cp);

  if (dump != nullptr) {
    if (dump->engram_layer == e.layer_ids[slot] && dump->engram_output != nullptr)
      *dump->engram_output = y;
    if (dump->gates != nullptr) {
      dump->gates->resize(e.layer_ids.size());
      (*dump->gates)[slot] = gates;
    }
  }
  for (int64_t i = 0; i < T * C; ++i) h[i] += y[i];
  return absl::OkStatus();
}

}  // namespace engram
