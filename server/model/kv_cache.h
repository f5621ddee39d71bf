// The paged KV cache: fixed-size blocks of `block_size` positions for every layer, handed to
// sequences one block at a time, so memory is committed as sequences grow and returned the moment
// they finish. The blocks live in the backend's memory (device memory on a GPU). Not thread-safe:
// the engine thread owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "engram/kernels/backend.h"
#include "server/model/config.h"

namespace engram {

struct SequenceState;

class KvCache {
 public:
  // The K and V arrays live in `backend`'s memory, which must outlive the cache.
  KvCache(const ModelConfig& c, int num_blocks, int block_size, Backend* backend);

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  // One block beyond the pool, never handed out: the padding rows of a step graph (a decode
  // batch rounded up to a captured size) write their keys and values there.
  int32_t pad_block() const { return num_blocks_; }
  static uint64_t BytesPerBlock(const ModelConfig& c, int block_size);

  KvLayer layer(int i);

  // Grows `seq`'s block table to hold `total_tokens` positions. RESOURCE_EXHAUSTED (and no
  // change) when the free blocks do not suffice.
  absl::Status Reserve(SequenceState& seq, int64_t total_tokens);
  // Returns every block of `seq` to the pool and clears its table.
  void Release(SequenceState& seq);

 private:
  int num_blocks_;
  int block_size_;
  int kv_heads_;
  int head_dim_;
  int64_t layer_stride_;  // floats per layer
  BackendBuffer k_;
  BackendBuffer v_;
  std::vector<int32_t> free_;
};

}  // namespace engram
