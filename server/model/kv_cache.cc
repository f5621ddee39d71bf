#include "server/model/kv_cache.h"

#include "server/model/sequence_state.h"
#include "server/util/str_cat.h"

namespace engram {

KvCache::KvCache(const ModelConfig& c, int num_blocks, int block_size, Backend* backend)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      kv_heads_(c.num_key_value_heads),
      head_dim_(c.head_dim),
      layer_stride_(static_cast<int64_t>(num_blocks + 1) * block_size * c.num_key_value_heads *
                    c.head_dim),
      k_(backend, static_cast<size_t>(layer_stride_ * c.num_hidden_layers) * sizeof(float)),
      v_(backend, static_cast<size_t>(layer_stride_ * c.num_hidden_layers) * sizeof(float)) {
  free_.reserve(num_blocks);
  // Highest id last so blocks are handed out in ascending order (easier to read in dumps).
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t KvCache::BytesPerBlock(const ModelConfig& c, int block_size) {
  return 2ull * c.num_hidden_layers * block_size * c.num_key_value_heads * c.head_dim *
         sizeof(float);
}

KvLayer KvCache::layer(int i) {
  return KvLayer{k_.get<float>() + i * layer_stride_, v_.get<float>() + i * layer_stride_,
                 block_size_, kv_heads_, head_dim_};
}

absl::Status KvCache::Reserve(SequenceState& seq, int64_t total_tokens) {
  const int64_t need =
      (total_tokens + block_size_ - 1) / block_size_ - static_cast<int64_t>(seq.block_table.size());
  if (need <= 0) return absl::OkStatus();
  if (need > static_cast<int64_t>(free_.size()))
    return absl::ResourceExhaustedError(StrCat("KV cache: ", total_tokens, " tokens need ", need,
                                               " more blocks, ", free_.size(), " of ", num_blocks_,
                                               " are free"));
  for (int64_t i = 0; i < need; ++i) {
    seq.block_table.push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

void KvCache::Release(SequenceState& seq) {
  for (int32_t b : seq.block_table) free_.push_back(b);
  seq.block_table.clear();
}

}  // namespace engram
