#include "server/memory/prefetcher.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engram/kernels/check.h"

namespace engram {
namespace {

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

StepRows HashStepTokens(const NgramHasher& hasher, std::span<const int64_t> compress,
                        int64_t compressed_pad, const StepTokens& step) {
  const int n = hasher.ngram();
  const int per_token = hasher.heads_per_layer();
  StepRows out;
  out.rows.resize(hasher.num_slots());
  std::vector<int64_t> full, windows;
  for (size_t e = 0; e < step.tokens.size(); ++e) {
    auto& comp = out.compressed.emplace_back();
    for (int32_t t : step.tokens[e]) comp.push_back(compress[t]);
    if (hasher.num_slots() == 0) continue;
    // The tail holds the ids just before this step, so windows cross chunk boundaries.
    full.assign(step.tails[e].begin(), step.tails[e].end());
    const auto offset = static_cast<int64_t>(full.size());
    full.insert(full.end(), comp.begin(), comp.end());
    NgramHasher::Windows(full, offset, offset + static_cast<int64_t>(comp.size()), n,
                         compressed_pad, &windows);
    for (int slot = 0; slot < hasher.num_slots(); ++slot) {
      auto& rows = out.rows[slot];
      const size_t base = rows.size();
      rows.resize(base + comp.size() * per_token);
      for (size_t j = 0; j < comp.size(); ++j)
        hasher.RowIds(slot, windows.data() + j * n, rows.data() + base + j * per_token);
    }
  }
  return out;
}

EngramPrefetcher::EngramPrefetcher(const NgramHasher& hasher, std::span<const int64_t> compress,
                                   int64_t compressed_pad,
                                   std::vector<std::unique_ptr<TableStore>> stores, bool async,
                                   std::vector<EngramRowPath> paths)
    : hasher_(hasher),
      compress_(compress),
      compressed_pad_(compressed_pad),
      stores_(std::move(stores)),
      async_(async),
      paths_(std::move(paths)) {
  paths_.resize(stores_.size(), EngramRowPath::kEmbeddings);
  if (async_) worker_ = std::thread([this] { WorkerLoop(); });
}

EngramPrefetcher::~EngramPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

EngramPrefetcher::Buffer& EngramPrefetcher::Find(Ticket t) {
  for (Buffer& b : buffers_)
    if (b.in_use && b.ticket == t) return b;
  ENGRAM_CHECK_MSG(false, "unknown prefetch ticket %llu", static_cast<unsigned long long>(t));
  return buffers_[0];
}

EngramPrefetcher::Ticket EngramPrefetcher::Submit(StepTokens step) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !buffers_[0].in_use || !buffers_[1].in_use; });
  Buffer& b = !buffers_[0].in_use ? buffers_[0] : buffers_[1];
  b.in_use = true;
  b.ticket = next_ticket_++;
  b.tokens = std::move(step);
  b.rows = StepRows{};
  b.slots_ready = 0;
  b.hashed = false;
  b.done = false;
  b.status = absl::OkStatus();
  b.embeddings.resize(stores_.size());
  b.unique.resize(stores_.size());
  b.ref.resize(stores_.size());
  b.packed.resize(stores_.size());
  b.submitted_ns = NowNs();
  if (async_) {
    queue_.push_back(&b);
    cv_.notify_all();
  }
  return b.ticket;
}

void EngramPrefetcher::Hash(Buffer& b) {
  b.rows = HashStepTokens(hasher_, compress_, compressed_pad_, b.tokens);
  b.hashed = true;
}

absl::Status EngramPrefetcher::FetchSlot(Buffer& b, int slot) {
  const std::vector<int64_t>& ids = b.rows.rows[slot];
  const TableLayout& l = stores_[slot]->layout();
  // De-duplicate: Zipf-distributed n-grams repeat within a step, so each row is read once.
  std::vector<int64_t>& unique = b.unique[slot];
  std::vector<int32_t>& ref = b.ref[slot];
  unique.assign(ids.begin(), ids.end());
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  ref.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    ref[i] = static_cast<int32_t>(std::lower_bound(unique.begin(), unique.end(), ids[i]) -
                                  unique.begin());
  stats_.lookups.fetch_add(ids.size(), std::memory_order_relaxed);
  stats_.unique_rows.fetch_add(unique.size(), std::memory_order_relaxed);
  if (paths_[slot] == EngramRowPath::kIds) return absl::OkStatus();
  std::vector<std::byte>& packed = b.packed[slot];
  packed.resize(unique.size() * l.packed_bytes);
  if (absl::Status st = stores_[slot]->Gather(unique, packed.data()); !st.ok()) return st;
  if (paths_[slot] == EngramRowPath::kPacked) return absl::OkStatus();
  b.dequant.resize(unique.size() * l.d);
  DequantPackedRows(l, packed.data(), static_cast<int64_t>(unique.size()), b.dequant.data());
  // Token t's embedding is its (N-1)*H rows of d values, concatenated.
  std::vector<float>& e = b.embeddings[slot];
  e.resize(ids.size() * l.d);
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(e.data() + i * l.d, b.dequant.data() + static_cast<size_t>(ref[i]) * l.d,
                l.d * sizeof(float));
  return absl::OkStatus();
}

void EngramPrefetcher::WorkerLoop() {
  for (;;) {
    Buffer* b;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      b = queue_.front();
      queue_.pop_front();
    }
    // Until `done` the worker owns b->tokens and b->rows; the engine thread only reads a slot's
    // embeddings after the worker marked that slot ready under the lock.
    Hash(*b);
    for (int slot = 0; slot < num_slots(); ++slot) {
      absl::Status st = FetchSlot(*b, slot);
      std::lock_guard<std::mutex> lock(mu_);
      if (!st.ok()) {
        b->status = std::move(st);
        stats_.errors.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      b->slots_ready = slot + 1;
      cv_.notify_all();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      b->slots_ready = num_slots();
      b->done = true;
      stats_.prefetch_ns.fetch_add(NowNs() - b->submitted_ns, std::memory_order_relaxed);
      stats_.steps.fetch_add(1, std::memory_order_relaxed);
    }
    cv_.notify_all();
  }
}

absl::StatusOr<SlotRows> EngramPrefetcher::Wait(Ticket t, int slot) {
  const uint64_t t0 = NowNs();
  Buffer* b;
  if (async_) {
    std::unique_lock<std::mutex> lock(mu_);
    b = &Find(t);
    cv_.wait(lock, [&] { return b->slots_ready > slot; });
  } else {
    b = &Find(t);
    if (!b->hashed) Hash(*b);
    while (b->status.ok() && b->slots_ready <= slot) {
      b->status = FetchSlot(*b, b->slots_ready);
      if (!b->status.ok()) stats_.errors.fetch_add(1, std::memory_order_relaxed);
      ++b->slots_ready;
    }
    // Synchronous lookups are all on the critical path: their time is both prefetch and stall.
    stats_.prefetch_ns.fetch_add(NowNs() - t0, std::memory_order_relaxed);
  }
  stats_.stall_ns.fetch_add(NowNs() - t0, std::memory_order_relaxed);
  if (!b->status.ok()) return b->status;
  SlotRows r;
  r.embeddings = paths_[slot] == EngramRowPath::kEmbeddings ? b->embeddings[slot].data() : nullptr;
  r.packed = paths_[slot] == EngramRowPath::kPacked ? b->packed[slot].data() : nullptr;
  r.unique = b->unique[slot].data();
  r.ref = b->ref[slot].data();
  r.num_unique = static_cast<int64_t>(b->unique[slot].size());
  r.num_refs = static_cast<int64_t>(b->ref[slot].size());
  return r;
}

StepRows EngramPrefetcher::Finish(Ticket t) {
  StepRows rows;
  {
    std::unique_lock<std::mutex> lock(mu_);
    Buffer& b = Find(t);
    // The worker may still be fetching later layers if the forward pass stopped early.
    if (async_) {
      cv_.wait(lock, [&] { return b.done; });
    } else {
      if (!b.hashed) Hash(b);
      stats_.steps.fetch_add(1, std::memory_order_relaxed);
    }
    rows = std::move(b.rows);
    b.in_use = false;
  }
  cv_.notify_all();
  return rows;
}

}  // namespace engram
