// The RAM row cache the SSD tier puts in front of its file (DESIGN §3). Engram row ids follow the
// Zipf distribution of n-grams, so a cache of a small fraction of the table catches most lookups.
//
// Set-associative: a row id is hashed to one set of `ways` entries (8 by default); within a set
// the policy picks the victim. LRU keeps an exact recency rank per way (one byte, no clock that
// could wrap); LFU keeps a 16-bit use count per way, halved across the set when one saturates so
// old popularity fades. Everything is allocated once at construction: a lookup or an insert
// never allocates. Not thread-safe: the owning store is driven by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "server/memory/table_store.h"

namespace engram {

class RowCache {
 public:
  static constexpr int kDefaultWays = 8;

  // Bytes one cached row costs: the row plus its tag and policy state.
  static uint64_t BytesPerRow(uint64_t row_bytes) { return row_bytes + kMetaBytesPerWay; }
  // Rows a cache of `bytes` holds (a multiple of `ways`; 0 when not even one set fits).
  static uint64_t CapacityRows(uint64_t bytes, uint64_t row_bytes, int ways = kDefaultWays);

  // A cache of at most `bytes` (rows, tags and policy state together) of `row_bytes`-byte rows.
  // CapacityRows(bytes, row_bytes, ways) must be > 0.
  RowCache(uint64_t bytes, uint64_t row_bytes, CachePolicy policy, int ways = kDefaultWays);
  RowCache(const RowCache&) = delete;
  RowCache& operator=(const RowCache&) = delete;

  // The cached row `id` (row_bytes bytes, valid until the next Insert), or nullptr. Counts a
  // hit or a miss and updates the policy state.
  const std::byte* Lookup(int64_t id);
  // Stores a copy of row `id` (id >= 0), evicting the policy's victim of its set when full. A row
  // already present is overwritten in place.
  void Insert(int64_t id, const std::byte* row);
  // Whether `id` is cached, without touching counters or policy state (tests, diagnostics).
  bool Contains(int64_t id) const;

  CachePolicy policy() const { return policy_; }
  int ways() const { return ways_; }
  uint64_t sets() const { return sets_; }
  uint64_t capacity_rows() const { return sets_ * static_cast<uint64_t>(ways_); }
  uint64_t row_bytes() const { return row_bytes_; }
  uint64_t footprint_bytes() const { return capacity_rows() * BytesPerRow(row_bytes_); }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  uint64_t evictions() const { return evictions_; }
  double hit_rate() const {
    const uint64_t n = hits_ + misses_;
    return n ? static_cast<double>(hits_) / static_cast<double>(n) : 0.0;
  }

 private:
  static constexpr uint64_t kMetaBytesPerWay = sizeof(int64_t) + sizeof(uint16_t);
  static constexpr int64_t kEmpty = -1;

  uint64_t SetOf(int64_t id) const;
  int64_t* Tags(uint64_t set) { return tags_.get() + set * static_cast<uint64_t>(ways_); }
  uint16_t* Meta(uint64_t set) { return meta_.get() + set * static_cast<uint64_t>(ways_); }
  std::byte* Row(uint64_t set, int way) {
    return rows_.get() +
           (set * static_cast<uint64_t>(ways_) + static_cast<uint64_t>(way)) * row_bytes_;
  }
  void Touch(uint16_t* meta, int way);  // a hit on `way`
  int Victim(const int64_t* tags, const uint16_t* meta) const;

  CachePolicy policy_;
  int ways_;
  uint64_t row_bytes_;
  uint64_t sets_;
  std::unique_ptr<int64_t[]> tags_;    // [sets * ways], kEmpty when free
  std::unique_ptr<uint16_t[]> meta_;   // LRU: rank (0 = most recent); LFU: use count
  std::unique_ptr<std::byte[]> rows_;  // [sets * ways * row_bytes], uninitialised until used
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace engram
