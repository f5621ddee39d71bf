// A test double for a device backend, on the CPU: its memory is separate from the host's as far
// as the model can tell (host_memory() is false), and every op checks that each pointer it is
// handed — arrays, tap and store pointer tables, the pointers inside them — lies inside memory
// this backend allocated, then runs the CPU reference. A model that hands a host pointer to an
// op, forgets an upload, reads a buffer after freeing it, or uploads into memory an op has used
// since the last sync point (which a device's copy stream would overwrite while that op still
// runs: backend.h, Upload) fails here, on any machine, instead of misbehaving on a GPU. Allocations
// are poisoned (NaN) so a buffer read before it is written shows up in the logits.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engram/kernels/op_recorder.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace engram::testing_util {

class SeparateMemoryBackend final : public Backend {
 public:
  SeparateMemoryBackend() : cpu_(2) {}
  ~SeparateMemoryBackend() override {
    for (void* p : resident_) Release(p);
  }

  std::string_view name() const override { return "separate-memory"; }
  bool host_memory() const override { return false; }

  void* Allocate(size_t bytes) override {
    recorder_.CheckNotRecording("Allocate");
    void* p = cpu_.Allocate(bytes);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (size_t i = 0; i + sizeof(float) <= bytes; i += sizeof(float))
      std::memcpy(static_cast<char*>(p) + i, &nan, sizeof(float));
    live_[reinterpret_cast<uintptr_t>(p)] = bytes;
    return p;
  }
  void Free(void* p) override {
    recorder_.CheckNotRecording("Free");
    if (p == nullptr) return;
    EXPECT_EQ(live_.count(reinterpret_cast<uintptr_t>(p)), 1u) << "Free of unknown pointer";
    Release(p);
  }
  void Upload(void* dst, const void* src, size_t bytes) override {
    recorder_.CheckNotRecording("Upload");
    Check(dst, bytes, "Upload dst", /*op=*/false);
    ExpectUnusedSinceSync(dst, static_cast<int64_t>(bytes), "Upload into");
    EXPECT_FALSE(Owns(src, 1)) << "Upload from backend memory";
    std::memcpy(dst, src, bytes);
    ++uploads_;
  }
  void Download(void* dst, const void* src, size_t bytes) override {
    recorder_.CheckNotRecording("Download");
    Check(src, bytes, "Download src", /*op=*/false);
    EXPECT_FALSE(Owns(dst, 1)) << "Download into backend memory";
    std::memcpy(dst, src, bytes);
    touched_.clear();
  }
  void Synchronize() override {
    recorder_.CheckNotRecording("Synchronize");
    touched_.clear();
  }
  std::pair<size_t, size_t> FreeMemory() const override { return {free_, total_}; }
  void set_free_memory(size_t free, size_t total) {
    free_ = free;
    total_ = total;
  }
  Matrix Resident(const Matrix& host) override {
    const size_t bytes = static_cast<size_t>(host.rows * host.cols) * DTypeSize(host.dtype);
    void* p = Allocate(bytes);
    std::memcpy(p, host.data, bytes);
    resident_.push_back(p);
    return Matrix{p, host.dtype, host.rows, host.cols};
  }
  const float* Resident(const float* host, int64_t n) override {
    void* p = Allocate(static_cast<size_t>(n) * sizeof(float));
    std::memcpy(p, host, static_cast<size_t>(n) * sizeof(float));
    resident_.push_back(p);
    return static_cast<const float*>(p);
  }

  void Linear(const float* x, int64_t m, const Matrix& w, const float* bias, float* y) override {
    if (recorder_.Defer([=, this] { Linear(x, m, w, bias, y); })) return;
    Check(x, m * w.cols * 4, "Linear x");
    Check(w.data, w.rows * w.cols * DTypeSize(w.dtype), "Linear w");
    if (bias != nullptr) Check(bias, w.rows * 4, "Linear bias");
    Check(y, m * w.rows * 4, "Linear y");
    cpu_.Linear(x, m, w, bias, y);
  }
  void RmsNorm(const float* x, int64_t rows, int dim, const float* weight, float eps,
               float* y) override {
    if (recorder_.Defer([=, this] { RmsNorm(x, rows, dim, weight, eps, y); })) return;
    Check(x, rows * dim * 4, "RmsNorm x");
    Check(weight, dim * 4, "RmsNorm weight");
    Check(y, rows * dim * 4, "RmsNorm y");
    cpu_.RmsNorm(x, rows, dim, weight, eps, y);
  }
  void Rope(float* x, int64_t rows, int heads, int head_dim, const int64_t* pos,
            const float* inv_freq) override {
    if (recorder_.Defer([=, this] { Rope(x, rows, heads, head_dim, pos, inv_freq); })) return;
    Check(x, rows * heads * head_dim * 4, "Rope x");
    Check(pos, rows * 8, "Rope pos");
    Check(inv_freq, head_dim / 2 * 4, "Rope inv_freq");
    cpu_.Rope(x, rows, heads, head_dim, pos, inv_freq);
  }
  void SwiGlu(const float* gate, const float* up, int64_t n, float* out) override {
    if (recorder_.Defer([=, this] { SwiGlu(gate, up, n, out); })) return;
    Check(gate, n * 4, "SwiGlu gate");
    Check(up, n * 4, "SwiGlu up");
    Check(out, n * 4, "SwiGlu out");
    cpu_.SwiGlu(gate, up, n, out);
  }
  void Embedding(const Matrix& table, const int32_t* ids, int64_t n, float* out) override {
    if (recorder_.Defer([=, this] { Embedding(table, ids, n, out); })) return;
    Check(table.data, table.rows * table.cols * DTypeSize(table.dtype), "Embedding table");
    Check(ids, n * 4, "Embedding ids");
    Check(out, n * table.cols * 4, "Embedding out");
    cpu_.Embedding(table, ids, n, out);
  }
  void Attention(const AttentionBatch& b, const KvLayer& kv, const float* q, const float* k,
                 const float* v, int num_heads, float* out) override {
    if (recorder_.Defer([=, this] { Attention(b, kv, q, k, v, num_heads, out); })) return;
    Check(b.row_begin, (b.num_seqs + 1) * 4, "Attention row_begin");
    Check(b.pos_begin, b.num_seqs * 8, "Attention pos_begin");
    Check(b.block_tables, static_cast<int64_t>(b.num_seqs) * b.block_table_stride * 4,
          "Attention block_tables");
    Check(kv.k, 4, "Attention k cache");
    Check(kv.v, 4, "Attention v cache");
    const int64_t kv_row = static_cast<int64_t>(kv.num_kv_heads) * kv.head_dim;
    Check(q, b.num_rows * num_heads * kv.head_dim * 4, "Attention q");
    Check(k, b.num_rows * kv_row * 4, "Attention k");
    Check(v, b.num_rows * kv_row * 4, "Attention v");
    Check(out, b.num_rows * num_heads * kv.head_dim * 4, "Attention out");
    EXPECT_EQ(b.row_begin[b.num_seqs], b.num_rows);
    int64_t max_context = 0;
    for (int s = 0; s < b.num_seqs; ++s)
      max_context =
          std::max<int64_t>(max_context, b.pos_begin[s] + b.row_begin[s + 1] - b.row_begin[s]);
    EXPECT_GE(b.max_context, max_context) << "AttentionBatch::max_context";
    cpu_.Attention(b, kv, q, k, v, num_heads, out);
  }
  void EngramGate(const EngramGateParams& p) override {
    if (recorder_.Defer([=, this] { EngramGate(p); })) return;
    const int64_t rmd = p.rows * p.branches * p.hidden * 4;
    Check(p.hidden_in, rmd, "EngramGate hidden_in");
    Check(p.keys, rmd, "EngramGate keys");
    Check(p.value, p.rows * p.hidden * 4, "EngramGate value");
    Check(p.key_norm, p.branches * p.hidden * 4, "EngramGate key_norm");
    Check(p.query_norm, p.branches * p.hidden * 4, "EngramGate query_norm");
    Check(p.gates, p.rows * p.branches * 4, "EngramGate gates");
    Check(p.gated, rmd, "EngramGate gated");
    if (p.z != nullptr) {
      Check(p.z, rmd, "EngramGate z");
      Check(p.conv_norm, p.branches * p.hidden * 4, "EngramGate conv_norm");
    }
    cpu_.EngramGate(p);
  }
  void RmsNormBranches(const float* x, int64_t rows, int branches, int dim, const float* weights,
                       float eps, float* y) override {
    if (recorder_.Defer([=, this] { RmsNormBranches(x, rows, branches, dim, weights, eps, y); }))
      return;
    Check(x, rows * branches * dim * 4, "RmsNormBranches x");
    Check(weights, branches * dim * 4, "RmsNormBranches weights");
    Check(y, rows * branches * dim * 4, "RmsNormBranches y");
    cpu_.RmsNormBranches(x, rows, branches, dim, weights, eps, y);
  }
  void ShortConv(const ShortConvParams& p) override {
    if (recorder_.Defer([=, this] { ShortConv(p); })) return;
    const int64_t rc = p.rows * p.channels * 4;
    Check(p.weight, static_cast<int64_t>(p.channels) * p.kernel * 4, "ShortConv weight");
    Check(p.z, rc, "ShortConv z");
    Check(p.gated, rc, "ShortConv gated");
    if (p.out != nullptr) Check(p.out, rc, "ShortConv out");
    if (p.residual != nullptr) Check(p.residual, rc, "ShortConv residual");
    Check(p.taps, p.rows * (p.kernel - 1) * 8, "ShortConv taps");
    for (int64_t i = 0; i < p.rows * (p.kernel - 1); ++i)
      if (p.taps[i] != nullptr) Check(p.taps[i], p.channels * 4, "ShortConv tap row");
    if (p.z_store != nullptr) {
      Check(p.z_store, p.rows * 8, "ShortConv z_store");
      for (int64_t r = 0; r < p.rows; ++r)
        if (p.z_store[r] != nullptr) Check(p.z_store[r], p.channels * 4, "ShortConv store row");
    }
    cpu_.ShortConv(p);
  }
  void BroadcastBranches(const float* x, int64_t rows, int branches, int dim, float* h) override {
    if (recorder_.Defer([=, this] { BroadcastBranches(x, rows, branches, dim, h); })) return;
    Check(x, rows * dim * 4, "BroadcastBranches x");
    Check(h, rows * branches * dim * 4, "BroadcastBranches h");
    cpu_.BroadcastBranches(x, rows, branches, dim, h);
  }
  void BranchMean(const float* h, int64_t rows, int branches, int dim, float* x) override {
    if (recorder_.Defer([=, this] { BranchMean(h, rows, branches, dim, x); })) return;
    Check(h, rows * branches * dim * 4, "BranchMean h");
    Check(x, rows * dim * 4, "BranchMean x");
    cpu_.BranchMean(h, rows, branches, dim, x);
  }
  void AddToBranches(const float* delta, int64_t rows, int branches, int dim, float* h) override {
    if (recorder_.Defer([=, this] { AddToBranches(delta, rows, branches, dim, h); })) return;
    Check(delta, rows * dim * 4, "AddToBranches delta");
    Check(h, rows * branches * dim * 4, "AddToBranches h");
    cpu_.AddToBranches(delta, rows, branches, dim, h);
  }
  void GatherRows(const float* x, const int32_t* index, int64_t n, int dim, float* out) override {
    if (recorder_.Defer([=, this] { GatherRows(x, index, n, dim, out); })) return;
    Check(index, n * 4, "GatherRows index");
    for (int64_t i = 0; i < n; ++i)
      Check(x + static_cast<int64_t>(index[i]) * dim, dim * 4, "GatherRows row");
    Check(out, n * dim * 4, "GatherRows out");
    cpu_.GatherRows(x, index, n, dim, out);
  }

  void ProductKeyScores(const ProductKeyScoresParams& p) override {
    if (recorder_.Defer([=, this] { ProductKeyScores(p); })) return;
    Check(p.query, p.rows * p.heads * p.k_dim * 4, "ProductKeyScores query");
    Check(p.keys, p.heads * p.n_keys * p.k_dim * 4, "ProductKeyScores keys");
    Check(p.scores, p.rows * p.heads * 2 * p.n_keys * 4, "ProductKeyScores scores");
    cpu_.ProductKeyScores(p);
  }
  void RowTopK(const float* x, int64_t rows, int64_t n, int k, float* values,
               int32_t* index) override {
    if (recorder_.Defer([=, this] { RowTopK(x, rows, n, k, values, index); })) return;
    Check(x, rows * n * 4, "RowTopK x");
    Check(values, rows * k * 4, "RowTopK values");
    Check(index, rows * k * 4, "RowTopK index");
    cpu_.RowTopK(x, rows, n, k, values, index);
  }
  void ProductKeyCandidates(const ProductKeyCandidatesParams& p) override {
    if (recorder_.Defer([=, this] { ProductKeyCandidates(p); })) return;
    Check(p.best_scores, p.groups * 2 * p.knn * 4, "ProductKeyCandidates best_scores");
    Check(p.best_ids, p.groups * 2 * p.knn * 4, "ProductKeyCandidates best_ids");
    Check(p.weights, p.groups * p.knn * 4, "ProductKeyCandidates weights");
    Check(p.indices, p.groups * p.knn * 8, "ProductKeyCandidates indices");
    cpu_.ProductKeyCandidates(p);
  }
  void WeightedRowSum(const WeightedRowSumParams& p) override {
    if (recorder_.Defer([=, this] { WeightedRowSum(p); })) return;
    const int64_t refs = p.rows * p.per_row;
    Check(p.rows_idx, refs * 8, "WeightedRowSum rows_idx");
    Check(p.weights, refs * 4, "WeightedRowSum weights");
    for (int64_t i = 0; i < refs; ++i)
      Check(static_cast<const char*>(p.packed) + p.rows_idx[i] * p.packed_bytes, p.packed_bytes,
            "WeightedRowSum packed row");
    Check(p.out, p.rows * p.d * 4, "WeightedRowSum out");
    cpu_.WeightedRowSum(p);
  }
  void SigmoidScaleRows(const float* logit, int64_t rows, int dim, float* x) override {
    if (recorder_.Defer([=, this] { SigmoidScaleRows(logit, rows, dim, x); })) return;
    Check(logit, rows * 4, "SigmoidScaleRows logit");
    Check(x, rows * dim * 4, "SigmoidScaleRows x");
    cpu_.SigmoidScaleRows(logit, rows, dim, x);
  }

  void DequantRows(const void* packed, int64_t packed_bytes, DType dtype, int d,
                   const int32_t* src_row, int64_t rows, float* out) override {
    if (recorder_.Defer(
            [=, this] { DequantRows(packed, packed_bytes, dtype, d, src_row, rows, out); }))
      return;
    Check(src_row, rows * 4, "DequantRows src_row");
    for (int64_t r = 0; r < rows; ++r)
      Check(static_cast<const char*>(packed) + src_row[r] * packed_bytes, packed_bytes,
            "DequantRows packed row");
    Check(out, rows * d * 4, "DequantRows out");
    cpu_.DequantRows(packed, packed_bytes, dtype, d, src_row, rows, out);
  }
  std::unique_ptr<BackendTable> OpenHostTable(const PackedTable& table, size_t cache_bytes,
                                              int max_rows_per_call, std::string* error) override {
    ++tables_opened_;
    auto t = cpu_.OpenHostTable(table, cache_bytes, max_rows_per_call, error);
    table_row_bytes_[t.get()] = table.packed_bytes;
    return t;
  }
  void FetchPackedRows(BackendTable& table, const int64_t* ids, int64_t n, void* out) override {
    recorder_.CheckNotRecording("FetchPackedRows");
    Check(ids, n * 8, "FetchPackedRows ids");
    const int64_t out_bytes = n * table_row_bytes_.at(&table);
    Check(out, out_bytes, "FetchPackedRows out", /*op=*/false);
    ExpectUnusedSinceSync(out, out_bytes, "FetchPackedRows into");
    for (int64_t i = 1; i < n; ++i) EXPECT_LT(ids[i - 1], ids[i]) << "ids must be distinct";
    cpu_.FetchPackedRows(table, ids, n, out);
  }

  void Sample(const SampleBatch& b) override {
    recorder_.CheckNotRecording("Sample");
    const int64_t rows = b.rows;
    Check(b.logits, rows * b.vocab * 4, "Sample logits");
    Check(b.params, rows * static_cast<int64_t>(sizeof(SamplingRow)), "Sample params");
    Check(b.rng, rows * static_cast<int64_t>(sizeof(Xoshiro256)), "Sample rng");
    Check(b.tokens, rows * 4, "Sample tokens");
    Check(b.seen_offsets, (rows + 1) * 4, "Sample seen_offsets");
    Check(b.count_offsets, (rows + 1) * 4, "Sample count_offsets");
    if (b.seen_offsets[rows] > 0) Check(b.seen_tokens, b.seen_offsets[rows] * 4, "Sample seen");
    if (b.count_offsets[rows] > 0) {
      Check(b.count_tokens, b.count_offsets[rows] * 4, "Sample count_tokens");
      Check(b.count_values, b.count_offsets[rows] * 4, "Sample count_values");
    }
    ++samples_;
    cpu_.Sample(b);
  }

  // Recorded ops run their checks when launched, as a kernel reads its pointers when it runs:
  // a graph launched after its buffers moved, or over memory an upload has just written,
  // fails here like a direct op would.
  bool SupportsGraphs() const override { return true; }
  void BeginGraph() override { recorder_.Begin(); }
  std::unique_ptr<BackendGraph> EndGraph(std::string*) override {
    ++graphs_recorded_;
    return recorder_.End();
  }
  bool LaunchGraph(const BackendGraph& graph) override {
    ++graph_launches_;
    OpRecorder::Launch(graph);
    return true;
  }
  int64_t graphs_recorded() const { return graphs_recorded_; }
  int64_t graph_launches() const { return graph_launches_; }

  int64_t samples() const { return samples_; }
  int tables_opened() const { return tables_opened_; }
  // Allocations other than the Resident weights: what a model, cache or state still holds.
  size_t live_non_resident() const { return live_.size() - resident_.size(); }
  int64_t uploads() const { return uploads_; }
  int64_t violations() const { return violations_; }

 private:
  // True when [p, p + bytes) lies inside one live allocation.
  bool Owns(const void* p, int64_t bytes) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto it = live_.upper_bound(a);
    if (it == live_.begin()) return false;
    --it;
    return a >= it->first && a + static_cast<uintptr_t>(bytes) <= it->first + it->second;
  }
  // Upload and FetchPackedRows may run beside earlier ops on a device: their destinations must
  // not have been used by any op since the last sync point.
  void ExpectUnusedSinceSync(const void* p, int64_t bytes, const char* what) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    for (const auto& [lo, hi] : touched_)
      if (a < hi && lo < a + static_cast<uintptr_t>(bytes)) {
        ++violations_;
        ADD_FAILURE() << what << " " << bytes << " bytes at " << p
                      << " that an op has used since the last Download/Synchronize";
        return;
      }
  }
  // Every pointer an op takes; `op` ranges are remembered until the next sync point.
  void Check(const void* p, int64_t bytes, const char* what, bool op = true) {
    if (op) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(p);
      touched_.emplace_back(a, a + static_cast<uintptr_t>(std::max<int64_t>(bytes, 1)));
    }
    if (Owns(p, std::max<int64_t>(bytes, 1))) return;
    ++violations_;
    ADD_FAILURE() << what << ": " << bytes << " bytes at " << p
                  << " are not inside memory this backend allocated";
  }
  void Release(void* p) {
    live_.erase(reinterpret_cast<uintptr_t>(p));
    cpu_.Free(p);
  }

  CpuBackend cpu_;
  OpRecorder recorder_;
  int64_t graphs_recorded_ = 0, graph_launches_ = 0;
  std::map<uintptr_t, size_t> live_;
  std::vector<void*> resident_;
  std::vector<std::pair<uintptr_t, uintptr_t>> touched_;  // [begin, end) used by ops
  int64_t uploads_ = 0;
  int64_t violations_ = 0;
  size_t free_ = 0, total_ = 0;
  int tables_opened_ = 0;
  int64_t samples_ = 0;
  std::map<const BackendTable*, int64_t> table_row_bytes_;
};

}  // namespace engram::testing_util
