// What a sequence carries between forward calls: its KV block table and the Engram state that
// incremental decoding needs (DESIGN §2.1.2 and §2.1.7): the last N-1 compressed ids for the
// shifted n-grams and, per Engram layer, the last (w-1)*N normalised conv inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "engram/kernels/backend.h"

namespace engram {

struct SequenceState {
  std::vector<int32_t> block_table;
  int64_t num_cached = 0;                // positions already processed (K/V in the cache)
  std::vector<int64_t> compressed_tail;  // up to N-1 most recent compressed ids, oldest first
  // Per Engram slot, a ring of the last K = (w-1)*N normalised conv inputs z in the backend's
  // memory: [slots][K][M*D], time t at row t % K. A ring, not a shifting window, so a step only
  // writes its own rows (ShortConvParams::z_store) and nothing moves. Times below num_cached - K
  // are never read, so the ring needs no clearing when a sequence restarts.
  BackendBuffer conv_ring;
};

}  // namespace engram
