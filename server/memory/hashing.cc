#include "server/memory/hashing.h"

#include <set>

#include "absl/strings/str_join.h"
#include "server/util/str_cat.h"

namespace engram {
namespace {

__extension__ typedef unsigned __int128
    U128;  // GCC/Clang builtin; -Wpedantic knows no 128-bit type

uint64_t MulMod(uint64_t a, uint64_t b, uint64_t m) {
  return static_cast<uint64_t>((static_cast<U128>(a) * b) % m);
}

uint64_t PowMod(uint64_t a, uint64_t e, uint64_t m) {
  uint64_t r = 1;
  a %= m;
  while (e > 0) {
    if (e & 1) r = MulMod(r, a, m);
    a = MulMod(a, a, m);
    e >>= 1;
  }
  return r;
}

}  // namespace

bool IsPrime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t p :
       {2ull, 3ull, 5ull, 7ull, 11ull, 13ull, 17ull, 19ull, 23ull, 29ull, 31ull, 37ull}) {
    if (n % p == 0) return n == p;
  }
  uint64_t d = n - 1;
  int s = 0;
  while ((d & 1) == 0) {
    d >>= 1;
    ++s;
  }
  // These bases are a deterministic witness set for every n < 2^64.
  for (uint64_t a :
       {2ull, 3ull, 5ull, 7ull, 11ull, 13ull, 17ull, 19ull, 23ull, 29ull, 31ull, 37ull}) {
    uint64_t x = PowMod(a, d, n);
    if (x == 1 || x == n - 1) continue;
    bool composite = true;
    for (int r = 1; r < s; ++r) {
      x = MulMod(x, x, n);
      if (x == n - 1) {
        composite = false;
        break;
      }
    }
    if (composite) return false;
  }
  return true;
}

std::vector<std::vector<std::vector<int64_t>>> ComputeHeadPrimes(const EngramConfig& c) {
  std::set<int64_t> taken;
  std::vector<std::vector<std::vector<int64_t>>> out;
  for (size_t slot = 0; slot < c.layer_ids.size(); ++slot) {
    auto& per_layer = out.emplace_back();
    for (int n = 2; n <= c.max_ngram_size; ++n) {
      auto& heads = per_layer.emplace_back();
      int64_t start = c.engram_vocab_size[n - 2] - 1;
      for (int h = 0; h < c.n_head_per_ngram; ++h) {
        int64_t p = start + 1;
        while (!IsPrime(static_cast<uint64_t>(p)) || taken.count(p)) ++p;
        taken.insert(p);
        heads.push_back(p);
        start = p;
      }
    }
  }
  return out;
}

absl::Status ValidateEngramAddressing(const EngramConfig& c, const std::string& source) {
  for (int layer : c.layer_ids) {
    for (int64_t m : c.multipliers.at(layer))
      if ((m & 1) == 0)
        return absl::InvalidArgumentError(StrCat(source, ": key 'engram.multipliers.", layer,
                                                 "' holds even value ", m,
                                                 "; multipliers must be odd"));
  }
  const auto expect = ComputeHeadPrimes(c);
  for (size_t slot = 0; slot < c.layer_ids.size(); ++slot) {
    const int layer = c.layer_ids[slot];
    const auto& got = c.head_vocab_sizes.at(layer);
    for (size_t n = 0; n < got.size(); ++n) {
      for (size_t h = 0; h < got[n].size(); ++h) {
        const int64_t p = got[n][h];
        const std::string where =
            StrCat(source, ": key 'engram.head_vocab_sizes.", layer, "' n=", n + 2, " head ", h);
        if (!IsPrime(static_cast<uint64_t>(p)))
          return absl::InvalidArgumentError(StrCat(where, ": ", p, " is not prime"));
        if (p != expect[slot][n][h])
          return absl::InvalidArgumentError(
              StrCat(where, ": ", p, " differs from the prime walk of DESIGN §2.1.4, which gives ",
                     expect[slot][n][h], " (all: ", absl::StrJoin(expect[slot][n], ","), ")"));
      }
    }
  }
  return absl::OkStatus();
}

NgramHasher::NgramHasher(const EngramConfig& c) : n_(c.max_ngram_size), h_(c.n_head_per_ngram) {
  for (int layer : c.layer_ids) {
    Layer l;
    l.mult = c.multipliers.at(layer);
    int64_t off = 0;
    for (const auto& per_n : c.head_vocab_sizes.at(layer)) {
      for (int64_t p : per_n) {
        l.primes.push_back(p);
        l.offsets.push_back(off);
        off += p;
      }
    }
    l.total_rows = off;
    layers_.push_back(std::move(l));
  }
}

void NgramHasher::HeadIndices(int slot, const int64_t* ctx, int64_t* out) const {
  const Layer& l = layers_[slot];
  int64_t mix = WrapMul(ctx[0], l.mult[0]);
  for (int n = 2; n <= n_; ++n) {
    mix ^= WrapMul(ctx[n - 1], l.mult[n - 1]);
    const int base = (n - 2) * h_;
    for (int h = 0; h < h_; ++h) out[base + h] = FlooredMod(mix, l.primes[base + h]);
  }
}

void NgramHasher::RowIds(int slot, const int64_t* ctx, int64_t* out) const {
  HeadIndices(slot, ctx, out);
  const Layer& l = layers_[slot];
  for (int i = 0; i < heads_per_layer(); ++i) out[i] += l.offsets[i];
}

void NgramHasher::Windows(std::span<const int64_t> c, int64_t begin, int64_t end, int n,
                          int64_t pad, std::vector<int64_t>* out) {
  out->resize(static_cast<size_t>((end - begin) * n));
  int64_t* w = out->data();
  for (int64_t t = begin; t < end; ++t) {
    for (int k = 0; k < n; ++k) *w++ = t - k >= 0 ? c[static_cast<size_t>(t - k)] : pad;
  }
}

}  // namespace engram
