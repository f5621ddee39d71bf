// The Engram prefetcher (DESIGN §3). As soon as a step's tokens are fixed the engine submits
// them; the prefetch thread hashes every new token of every sequence for every Engram layer,
// de-duplicates the row ids, gathers the packed rows from the table store, dequantises them
// and lays out each token's (N-1)*E embedding, one layer at a time in layer order. The forward
// pass calls Wait(slot) right before each Engram layer, so the embedding and the blocks before
// the first Engram layer hide the lookup; the time it still blocks there is the stall.
//
// Two steps may be in flight (double-buffered staging): the engine can submit step n+1 while
// step n's forward pass still reads its buffer. With prefetch off, Wait does the whole lookup
// synchronously on the calling thread: the baseline the overlap must beat.
//
// Threading: Submit, Wait and Finish are called by one thread (the engine's); the worker is the
// only other thread touching a step's buffer, and only until it marks the buffer's slots ready.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/memory/hashing.h"
#include "server/memory/table_store.h"

namespace engram {

// What hashing a step needs, copied out of the sequences so another thread can hash it.
struct StepTokens {
  std::vector<std::vector<int64_t>> tails;   // per entry: up to N-1 earlier compressed ids
  std::vector<std::vector<int32_t>> tokens;  // per entry: the new raw token ids
};

// Engram rows of one step: per slot, (N-1)*H global row ids for every new token in step order.
struct StepRows {
  std::vector<std::vector<int64_t>> rows;        // [slot][token * (N-1)H + i]
  std::vector<std::vector<int64_t>> compressed;  // [entry] compressed ids of the new tokens
};

StepRows HashStepTokens(const NgramHasher& hasher, std::span<const int64_t> compress,
                        int64_t compressed_pad, const StepTokens& step);

// How far the prefetch thread takes a slot's rows before the forward pass gets them.
enum class EngramRowPath {
  kEmbeddings,  // gathered and dequantised on the CPU: each token's (N-1)*E floats
  kPacked,      // gathered on the CPU, still packed: the step's distinct rows, the backend
                // dequantises after one upload (the staged path; half the bytes for bf16)
  kIds,         // only the distinct row ids: the backend reads the rows itself (zero-copy from
                // pinned host memory, or its hot-row cache)
};

// One slot of a step as the forward pass receives it; pointers valid until Finish. `ref` maps
// every (token, head) of the step, in order, to its row in `unique` / `packed`.
struct SlotRows {
  const float* embeddings = nullptr;  // kEmbeddings: [tokens][(N-1)*E]
  const std::byte* packed = nullptr;  // kPacked: [num_unique][packed_bytes]
  const int64_t* unique = nullptr;    // [num_unique] distinct table rows, ascending
  const int32_t* ref = nullptr;       // [num_refs]
  int64_t num_unique = 0;
  int64_t num_refs = 0;
};

struct PrefetchStats {
  std::atomic<uint64_t> steps{0};
  std::atomic<uint64_t> lookups{0};      // tokens x heads (row references)
  std::atomic<uint64_t> unique_rows{0};  // after de-duplication per step and layer
  std::atomic<uint64_t> prefetch_ns{0};  // async: submit to last layer ready; sync: lookup time
  std::atomic<uint64_t> stall_ns{0};     // time the forward pass blocked in Wait
  std::atomic<uint64_t> errors{0};
};

class EngramPrefetcher {
 public:
  using Ticket = uint64_t;

  // `paths` per slot (empty: kEmbeddings for all).
  EngramPrefetcher(const NgramHasher& hasher, std::span<const int64_t> compress,
                   int64_t compressed_pad, std::vector<std::unique_ptr<TableStore>> stores,
                   bool async, std::vector<EngramRowPath> paths = {});
  ~EngramPrefetcher();
  EngramPrefetcher(const EngramPrefetcher&) = delete;
  EngramPrefetcher& operator=(const EngramPrefetcher&) = delete;

  bool async() const { return async_; }
  int num_slots() const { return static_cast<int>(stores_.size()); }
  const TableStore& store(int slot) const { return *stores_[slot]; }
  EngramRowPath path(int slot) const { return paths_[slot]; }
  const PrefetchStats& stats() const { return stats_; }

  // Starts the lookup of a step. Blocks while two earlier steps are still unfinished.
  Ticket Submit(StepTokens step);
  // The step's rows for `slot` as its path delivers them, valid until Finish(ticket).
  absl::StatusOr<SlotRows> Wait(Ticket t, int slot);
  // Ends the step, returning its row ids and compressed ids, and frees its buffer.
  StepRows Finish(Ticket t);

 private:
  struct Buffer {
    Ticket ticket = 0;
    bool in_use = false;
    StepTokens tokens;
    StepRows rows;
    bool hashed = false;
    bool done = false;    // async: the worker has finished with this buffer
    int slots_ready = 0;  // slots [0, slots_ready) are done
    absl::Status status;
    std::vector<std::vector<float>> embeddings;  // [slot][T * embed_dim] (kEmbeddings)
    std::vector<std::vector<int64_t>> unique;    // [slot] distinct rows
    std::vector<std::vector<int32_t>> ref;       // [slot] row reference -> unique index
    std::vector<std::vector<std::byte>> packed;  // [slot] packed distinct rows
    std::vector<float> dequant;                  // scratch
    uint64_t submitted_ns = 0;
  };

  Buffer& Find(Ticket t);
  void WorkerLoop();
  // Hashes (once) and fetches `slot` of `b`; runs on the worker, or on the caller when sync.
  void Hash(Buffer& b);
  absl::Status FetchSlot(Buffer& b, int slot);

  const NgramHasher& hasher_;
  std::span<const int64_t> compress_;
  int64_t compressed_pad_;
  std::vector<std::unique_ptr<TableStore>> stores_;
  bool async_;
  std::vector<EngramRowPath> paths_;
  PrefetchStats stats_;

  std::mutex mu_;
  std::condition_variable cv_;  // buffer freed, slot ready, work queued
  Buffer buffers_[2];
  std::deque<Buffer*> queue_;  // submitted, not yet started by the worker
  Ticket next_ticket_ = 1;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace engram
