// Engram addressing (DESIGN §2.1 steps 2-5): shifted n-grams of compressed ids, multiplicative
// XOR mixing in wrapping int64, and a floored modulo by a distinct prime per (layer, n, head).
// Addresses depend only on token ids, which is what lets the prefetcher fetch rows before the
// layer runs. Every function here is pure and thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "server/memory/engram_config.h"

namespace engram {

// Deterministic Miller-Rabin for all 64-bit n.
bool IsPrime(uint64_t n);

// Floored modulo: the result lies in [0, p) also for negative a (p > 0).
inline int64_t FlooredMod(int64_t a, int64_t p) {
  const int64_t r = a % p;
  return r < 0 ? r + p : r;
}

// Wrapping int64 multiply, as numpy's int64 arithmetic does.
inline int64_t WrapMul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}

// The prime walk of DESIGN §2.1.4: result[slot][n-2][head].
std::vector<std::vector<std::vector<int64_t>>> ComputeHeadPrimes(const EngramConfig& c);

// Checks config primes against the walk and multipliers for oddness; errors name `source`.
absl::Status ValidateEngramAddressing(const EngramConfig& c, const std::string& source);

class NgramHasher {
 public:
  explicit NgramHasher(const EngramConfig& c);

  int num_slots() const { return static_cast<int>(layers_.size()); }
  int ngram() const { return n_; }
  int heads_per_layer() const { return (n_ - 1) * h_; }
  int64_t total_rows(int slot) const { return layers_[slot].total_rows; }
  int64_t head_offset(int slot, int head) const { return layers_[slot].offsets[head]; }
  int64_t head_prime(int slot, int head) const { return layers_[slot].primes[head]; }

  // ctx[k] = x_k(t) for k = 0..N-1 (compressed ids, pad where t-k < 0). Writes (N-1)*H
  // head-local indices, order n = 2 heads 0..H-1, then n = 3, ...
  void HeadIndices(int slot, const int64_t* ctx, int64_t* out) const;
  // Same, but global table rows (head offset added).
  void RowIds(int slot, const int64_t* ctx, int64_t* out) const;

  // Fills ctx windows for positions [begin, end) of a compressed-id sequence c, padding
  // positions before 0 with `pad`. Result: (end-begin) windows of N values.
  static void Windows(std::span<const int64_t> c, int64_t begin, int64_t end, int n, int64_t pad,
                      std::vector<int64_t>* out);

 private:
  struct Layer {
    std::vector<int64_t> mult;     // N
    std::vector<int64_t> primes;   // (N-1)*H
    std::vector<int64_t> offsets;  // (N-1)*H
    int64_t total_rows = 0;
  };
  int n_;
  int h_;
  std::vector<Layer> layers_;
};

}  // namespace engram
