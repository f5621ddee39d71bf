// Engram addressing against values computed independently (by hand, and with Python's exact
// integers reduced mod 2^64): wrapping int64 products, XOR mixing, the floored modulo of
// negative mixes, the prime walk, and row offsets. One wrong bit here sends every lookup to
// the wrong row of a table trained elsewhere, so the expectations are literal numbers.
#include "server/memory/hashing.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// Two Engram layers (0 and 2), N = 3, H = 2, engram_vocab_size [10, 20].
EngramConfig SmallConfig() {
  EngramConfig c;
  c.layer_ids = {0, 2};
  c.max_ngram_size = 3;
  c.n_head_per_ngram = 2;
  c.n_embed_per_ngram = 8;
  c.engram_vocab_size = {10, 20};
  c.multipliers = {{0, {kMax, -1, 5}},
                   {2, {6364136223846793005, 1442695040888963407, 2685821657736338717}}};
  c.head_vocab_sizes = {{0, {{11, 13}, {23, 29}}}, {2, {{17, 19}, {31, 37}}}};
  c.table_files = {{0, "a"}, {2, "b"}};
  return c;
}

TEST(HashingTest, FlooredModOfNegativeValues) {
  EXPECT_EQ(FlooredMod(7, 3), 1);
  EXPECT_EQ(FlooredMod(-7, 3), 2);  // C++ % gives -1
  EXPECT_EQ(FlooredMod(-1, 11), 10);
  EXPECT_EQ(FlooredMod(-11, 11), 0);
  EXPECT_EQ(FlooredMod(0, 5), 0);
  // 2^63 = (2^10)^6 * 8 and 2^10 = 1024 ≡ 1 (mod 11), so -2^63 ≡ -8 ≡ 3.
  EXPECT_EQ(FlooredMod(kMin, 11), 3);
  EXPECT_EQ(FlooredMod(kMax, 1000003), 675344);
}

TEST(HashingTest, WrappingMultiply) {
  // (2^63 - 1) * 3 = 2^64 + 2^63 - 3 ≡ 2^63 - 3.
  EXPECT_EQ(WrapMul(kMax, 3), 9223372036854775805);
  EXPECT_EQ(WrapMul(int64_t{1} << 62, 4), 0);          // 2^64 ≡ 0
  EXPECT_EQ(WrapMul(-3, kMax), -9223372036854775805);  // -(2^63 - 3)
  EXPECT_EQ(WrapMul(kMin, -1), kMin);                  // 2^63 ≡ -2^63
  EXPECT_EQ(WrapMul(-1, 5), -5);
  // 0x9E3779B97F4A7C15^2 mod 2^64, reinterpreted as signed.
  const auto golden = static_cast<int64_t>(0x9E3779B97F4A7C15ull);
  EXPECT_EQ(WrapMul(golden, golden), -2358710677322311239);
}

TEST(HashingTest, PrimeWalk) {
  // Layer 0: n=2 starts at 9 -> 11, 13; n=3 starts at 19 -> 23, 29.
  // Layer 2: n=2 starts at 9 again, 11 and 13 are taken -> 17, 19; n=3: 23, 29 taken -> 31, 37.
  const auto p = ComputeHeadPrimes(SmallConfig());
  ASSERT_EQ(p.size(), 2u);
  EXPECT_THAT(p[0], ElementsAre(ElementsAre(11, 13), ElementsAre(23, 29)));
  EXPECT_THAT(p[1], ElementsAre(ElementsAre(17, 19), ElementsAre(31, 37)));
  EXPECT_TRUE(ValidateEngramAddressing(SmallConfig(), "cfg").ok());

  // A start that is itself prime is skipped: "greater than the current start".
  EngramConfig c = SmallConfig();
  c.layer_ids = {0};
  c.engram_vocab_size = {12, 12};  // start 11 -> 13, 17; then 19, 23 (13, 17 taken)
  EXPECT_THAT(ComputeHeadPrimes(c)[0], ElementsAre(ElementsAre(13, 17), ElementsAre(19, 23)));
}

TEST(HashingTest, ValidateRejectsEvenMultiplierAndBadPrimes) {
  EngramConfig c = SmallConfig();
  c.multipliers[2][2] = 4;
  EXPECT_THAT(std::string(ValidateEngramAddressing(c, "cfg.json").message()),
              HasSubstr("cfg.json: key 'engram.multipliers.2' holds even value 4"));
  c = SmallConfig();
  c.head_vocab_sizes[2][1][0] = 33;
  EXPECT_THAT(std::string(ValidateEngramAddressing(c, "cfg.json").message()),
              HasSubstr("'engram.head_vocab_sizes.2' n=3 head 0: 33 is not prime"));
  c = SmallConfig();
  c.head_vocab_sizes[0][0] = {13, 11};
  EXPECT_THAT(std::string(ValidateEngramAddressing(c, "cfg.json").message()),
              HasSubstr("13 differs from the prime walk"));
}

TEST(HashingTest, IsPrime) {
  for (uint64_t p :
       {2ull, 3ull, 5ull, 37ull, 41ull, 1000003ull, 2147483647ull, 2305843009213693951ull,
        18446744073709551557ull})  // 2^61-1, the largest prime below 2^64
    EXPECT_TRUE(IsPrime(p)) << p;
  for (uint64_t n : {0ull, 1ull, 4ull, 21ull, 561ull /* Carmichael */,
                     3215031751ull /* spsp(2,3,5,7) */, 1000001ull, 18446744073709551615ull})
    EXPECT_FALSE(IsPrime(n)) << n;
}

TEST(HashingTest, HeadIndicesWithWrapAndNegativeMix) {
  NgramHasher h(SmallConfig());
  ASSERT_EQ(h.num_slots(), 2);
  EXPECT_EQ(h.heads_per_layer(), 4);
  // Layer 0, ctx (x0, x1, x2) = (3, 5, 7), m = (2^63-1, -1, 5):
  //   3*(2^63-1) ≡ 0x7FFFFFFFFFFFFFFD, 5*(-1) = 0xFFFFFFFFFFFFFFFB,
  //   mix2 = XOR = 0x8000000000000006 = -2^63 + 6 ≡ 3 + 6 = 9 (mod 11), ≡ 11 (mod 13);
  //   mix3 = mix2 XOR 35 = 0x8000000000000025 = -2^63 + 37 ≡ 11 (mod 23), ≡ 25 (mod 29).
  const int64_t ctx[3] = {3, 5, 7};
  int64_t out[4];
  h.HeadIndices(0, ctx, out);
  EXPECT_THAT(out, ElementsAre(9, 11, 11, 25));
  h.RowIds(0, ctx, out);  // head offsets 0, 11, 24, 47
  EXPECT_THAT(out, ElementsAre(9, 22, 35, 72));
  EXPECT_EQ(h.total_rows(0), 11 + 13 + 23 + 29);
  EXPECT_EQ(h.head_offset(1, 2), 17 + 19);
  EXPECT_EQ(h.head_prime(1, 3), 37);

  // Layer 2 with large multipliers; expectations from exact integer arithmetic mod 2^64:
  // mix2 = -1289096035326096279, mix3 = 6274764135476596586.
  const int64_t ctx2[3] = {123456, 7, 99999};
  h.HeadIndices(1, ctx2, out);
  EXPECT_THAT(out, ElementsAre(4, 13, 2, 25));
}

TEST(HashingTest, WindowsPadBeforeTheStart) {
  const std::vector<int64_t> c = {10, 11, 12, 13};
  std::vector<int64_t> w;
  NgramHasher::Windows(c, 0, 4, 3, /*pad=*/-5, &w);
  EXPECT_THAT(w, ElementsAre(10, -5, -5, 11, 10, -5, 12, 11, 10, 13, 12, 11));
  NgramHasher::Windows(c, 2, 4, 2, 0, &w);  // a later chunk sees real history, not pad
  EXPECT_THAT(w, ElementsAre(12, 11, 13, 12));
}

}  // namespace
}  // namespace engram
