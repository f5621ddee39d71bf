// The set-associative row cache (server/memory/row_cache.h): sizing in bytes, exact hit/miss
// counts on a known sequence, LRU evicting the least recently used row of a set, LFU keeping a
// frequent row through a scan of new ones, saturating LFU counts, and rows never mixed up
// under a long random workload checked against a reference map.
#include "server/memory/row_cache.h"

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace engram {
namespace {

constexpr uint64_t kRowBytes = 24;

std::vector<std::byte> RowOf(int64_t id) {
  std::vector<std::byte> r(kRowBytes);
  for (uint64_t i = 0; i < kRowBytes; ++i)
    r[i] = static_cast<std::byte>((static_cast<uint64_t>(id) * 131 + i * 7) & 0xff);
  return r;
}

// One set of `ways` ways: every id lands in it, so the policy alone decides.
RowCache OneSet(CachePolicy policy, int ways = RowCache::kDefaultWays) {
  return RowCache(RowCache::BytesPerRow(kRowBytes) * static_cast<uint64_t>(ways), kRowBytes, policy,
                  ways);
}

void Put(RowCache& c, int64_t id) { c.Insert(id, RowOf(id).data()); }

bool Hit(RowCache& c, int64_t id) {
  const std::byte* p = c.Lookup(id);
  if (p != nullptr) {
    EXPECT_EQ(0, std::memcmp(p, RowOf(id).data(), kRowBytes)) << "row " << id;
  }
  return p != nullptr;
}

TEST(RowCacheTest, SizedInBytes) {
  const uint64_t per_row = RowCache::BytesPerRow(64);
  EXPECT_EQ(per_row, 64u + 10u);
  EXPECT_EQ(RowCache::CapacityRows(per_row * 8 - 1, 64), 0u);
  EXPECT_EQ(RowCache::CapacityRows(per_row * 8, 64), 8u);
  EXPECT_EQ(RowCache::CapacityRows(per_row * 100, 64), 96u);  // whole sets of 8
  RowCache c(1 << 20, 64, CachePolicy::kLru);
  EXPECT_LE(c.footprint_bytes(), 1u << 20);
  EXPECT_GT(c.footprint_bytes(), (1u << 20) - per_row * 8);
  EXPECT_EQ(c.capacity_rows(), c.sets() * 8);
}

TEST(RowCacheTest, CountsHitsAndMisses) {
  for (CachePolicy p : {CachePolicy::kLru, CachePolicy::kLfu}) {
    RowCache c = OneSet(p);
    EXPECT_FALSE(Hit(c, 1));
    Put(c, 1);
    EXPECT_TRUE(Hit(c, 1));
    EXPECT_TRUE(Hit(c, 1));
    EXPECT_FALSE(Hit(c, 2));
    Put(c, 2);
    EXPECT_TRUE(Hit(c, 2));
    EXPECT_FALSE(Hit(c, 3));
    EXPECT_EQ(c.hits(), 3u);
    EXPECT_EQ(c.misses(), 3u);
    EXPECT_EQ(c.evictions(), 0u);
    EXPECT_DOUBLE_EQ(c.hit_rate(), 0.5);
  }
}

TEST(RowCacheTest, LruEvictsTheLeastRecentlyUsedOfTheSet) {
  RowCache c = OneSet(CachePolicy::kLru);
  for (int64_t id = 0; id < 8; ++id) Put(c, id);
  // Recency now, oldest first: 0..7. Use 0 and 1 again: the oldest is 2.
  EXPECT_TRUE(Hit(c, 0));
  EXPECT_TRUE(Hit(c, 1));
  Put(c, 8);
  EXPECT_FALSE(c.Contains(2));
  EXPECT_TRUE(c.Contains(0) && c.Contains(1) && c.Contains(3) && c.Contains(8));
  Put(c, 9);  // then 3
  EXPECT_FALSE(c.Contains(3));
  EXPECT_EQ(c.evictions(), 2u);
  // Re-inserting a present row refreshes it instead of duplicating it: 4 survives the next two.
  Put(c, 4);
  Put(c, 10);
  Put(c, 11);
  EXPECT_TRUE(c.Contains(4));
  EXPECT_FALSE(c.Contains(5));
  EXPECT_FALSE(c.Contains(6));
}

TEST(RowCacheTest, LfuKeepsTheFrequentRow) {
  RowCache lfu = OneSet(CachePolicy::kLfu);
  RowCache lru = OneSet(CachePolicy::kLru);
  for (RowCache* c : {&lfu, &lru}) {
    Put(*c, 0);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(Hit(*c, 0));
    // A scan of 100 rows, each used twice, none as often as row 0.
    for (int64_t id = 1; id <= 100; ++id) {
      if (!Hit(*c, id)) Put(*c, id);
      Hit(*c, id);
    }
  }
  EXPECT_TRUE(lfu.Contains(0));
  EXPECT_FALSE(lru.Contains(0));  // LRU forgot it after 8 newer rows
  EXPECT_TRUE(lru.Contains(100));
}

TEST(RowCacheTest, LfuEvictsTheLeastFrequent) {
  RowCache c = OneSet(CachePolicy::kLfu);
  for (int64_t id = 0; id < 8; ++id) Put(c, id);
  for (int64_t id = 0; id < 8; ++id)
    for (int64_t k = 0; k < (id == 5 ? 0 : 3); ++k) EXPECT_TRUE(Hit(c, id));
  Put(c, 8);
  EXPECT_FALSE(c.Contains(5));
  for (int64_t id : {0, 1, 2, 3, 4, 6, 7, 8}) EXPECT_TRUE(c.Contains(id)) << id;
}

TEST(RowCacheTest, LfuCountsSaturateWithoutWrapping) {
  RowCache c = OneSet(CachePolicy::kLfu, 2);
  Put(c, 1);
  Put(c, 2);
  for (int i = 0; i < 200000; ++i) ASSERT_TRUE(Hit(c, 1));  // past 2^16: halved, not wrapped
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Hit(c, 2));
  Put(c, 3);  // row 1 is still the most frequent: 2 goes
  EXPECT_TRUE(c.Contains(1));
  EXPECT_FALSE(c.Contains(2));
}

TEST(RowCacheTest, RandomWorkloadNeverMixesRows) {
  for (CachePolicy p : {CachePolicy::kLru, CachePolicy::kLfu}) {
    RowCache c(RowCache::BytesPerRow(kRowBytes) * 512, kRowBytes, p);
    ASSERT_EQ(c.capacity_rows(), 512u);
    std::mt19937_64 rng(1);
    std::map<int64_t, bool> seen;
    uint64_t lookups = 0;
    for (int i = 0; i < 100000; ++i) {
      const auto id = static_cast<int64_t>(rng() % 4096);
      ++lookups;
      if (!Hit(c, id)) Put(c, id);  // Hit checks the row's bytes
    }
    EXPECT_EQ(c.hits() + c.misses(), lookups);
    // 512 of 4096 uniformly drawn ids fit: the hit rate is close to 1/8.
    EXPECT_NEAR(c.hit_rate(), 0.125, 0.02) << (p == CachePolicy::kLru ? "lru" : "lfu");
    uint64_t cached = 0;
    for (int64_t id = 0; id < 4096; ++id) cached += c.Contains(id);
    EXPECT_EQ(cached, 512u);
  }
}

}  // namespace
}  // namespace engram
