// Set-associative row cache (see row_cache.h). A set is `ways` consecutive entries of three
// arrays: tags (the row id or kEmpty), policy state (uint16) and the rows themselves.
#include "server/memory/row_cache.h"

#include <algorithm>
#include <cstring>

#include "engram/kernels/check.h"

namespace engram {
namespace {

__extension__ typedef unsigned __int128 Uint128;

// splitmix64's finaliser: consecutive ids (the hot ranks of a benchmark, or neighbouring
// buckets of one hash head) land in unrelated sets.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr uint16_t kLruFree = 0xffff;  // rank of an empty way: older than any occupied one
constexpr uint16_t kLfuMax = 0xffff;

}  // namespace

uint64_t RowCache::CapacityRows(uint64_t bytes, uint64_t row_bytes, int ways) {
  if (row_bytes == 0 || ways <= 0) return 0;
  const uint64_t per_set = BytesPerRow(row_bytes) * static_cast<uint64_t>(ways);
  return bytes / per_set * static_cast<uint64_t>(ways);
}

RowCache::RowCache(uint64_t bytes, uint64_t row_bytes, CachePolicy policy, int ways)
    : policy_(policy),
      ways_(ways),
      row_bytes_(row_bytes),
      sets_(CapacityRows(bytes, row_bytes, ways) / static_cast<uint64_t>(std::max(ways, 1))) {
  ENGRAM_CHECK(ways_ > 0 && ways_ <= 64 && sets_ > 0);
  const uint64_t n = capacity_rows();
  tags_ = std::make_unique_for_overwrite<int64_t[]>(n);
  meta_ = std::make_unique_for_overwrite<uint16_t[]>(n);
  rows_ = std::make_unique_for_overwrite<std::byte[]>(n * row_bytes_);
  std::fill_n(tags_.get(), n, kEmpty);
  std::fill_n(meta_.get(), n, policy_ == CachePolicy::kLru ? kLruFree : uint16_t{0});
}

uint64_t RowCache::SetOf(int64_t id) const {
  // Lemire's multiply-shift range reduction: any number of sets, no division.
  return static_cast<uint64_t>((static_cast<Uint128>(Mix(static_cast<uint64_t>(id))) * sets_) >>
                               64);
}

void RowCache::Touch(uint16_t* meta, int way) {
  if (policy_ == CachePolicy::kLru) {
    // Every occupied way more recent than `way` ages by one; `way` becomes the most recent.
    const uint16_t r = meta[way];
    for (int w = 0; w < ways_; ++w)
      if (meta[w] < r) ++meta[w];
    meta[way] = 0;
    return;
  }
  if (++meta[way] == kLfuMax) {
    // Saturated: halve the set's counts, keeping their order and letting old popularity fade.
    for (int w = 0; w < ways_; ++w) meta[w] = static_cast<uint16_t>(meta[w] >> 1);
  }
}

int RowCache::Victim(const int64_t* tags, const uint16_t* meta) const {
  for (int w = 0; w < ways_; ++w)
    if (tags[w] == kEmpty) return w;
  int best = 0;
  if (policy_ == CachePolicy::kLru) {
    for (int w = 1; w < ways_; ++w)
      if (meta[w] > meta[best]) best = w;  // the largest rank: least recently used
  } else {
    for (int w = 1; w < ways_; ++w)
      if (meta[w] < meta[best]) best = w;  // the smallest count: least frequently used
  }
  return best;
}

const std::byte* RowCache::Lookup(int64_t id) {
  const uint64_t set = SetOf(id);
  const int64_t* tags = Tags(set);
  for (int w = 0; w < ways_; ++w) {
    if (tags[w] == id) {
      Touch(Meta(set), w);
      ++hits_;
      return Row(set, w);
    }
  }
  ++misses_;
  return nullptr;
}

bool RowCache::Contains(int64_t id) const {
  const int64_t* tags = tags_.get() + SetOf(id) * static_cast<uint64_t>(ways_);
  return std::find(tags, tags + ways_, id) != tags + ways_;
}

void RowCache::Insert(int64_t id, const std::byte* row) {
  ENGRAM_CHECK(id >= 0);
  const uint64_t set = SetOf(id);
  int64_t* tags = Tags(set);
  uint16_t* meta = Meta(set);
  int way = static_cast<int>(std::find(tags, tags + ways_, id) - tags);
  if (way == ways_) {
    way = Victim(tags, meta);
    if (tags[way] != kEmpty) ++evictions_;
    tags[way] = id;
    if (policy_ == CachePolicy::kLru) {
      meta[way] = kLruFree;  // Touch then ages every occupied way and makes this one the newest
      Touch(meta, way);
    } else {
      meta[way] = 1;
    }
  } else {
    Touch(meta, way);
  }
  std::memcpy(Row(set, way), row, row_bytes_);
}

}  // namespace engram
