// bf16 / f16 / fp8-e4m3 / ue8m0 conversions on known bit patterns, exhaustive round trips, and
// round-to-nearest-even at every midpoint: tables and weights are stored in these formats, and
// the CPU and CUDA backends share these exact functions, so they are tested bit for bit.
#include "engram/kernels/dtype.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace engram {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(DTypeTest, Names) {
  EXPECT_EQ(DTypeFromSafetensors("F8_E4M3"), DType::kF8E4M3);
  EXPECT_EQ(DTypeFromSafetensors("BF16"), DType::kBF16);
  EXPECT_EQ(DTypeFromSafetensors("f32"), std::nullopt);  // case matters
  EXPECT_EQ(DTypeToSafetensors(DType::kI64), "I64");
  EXPECT_EQ(DTypeFromConfig("float8_e4m3"), DType::kF8E4M3);
  EXPECT_EQ(DTypeFromConfig("bfloat16"), DType::kBF16);
  EXPECT_EQ(DTypeFromConfig("F32"), std::nullopt);
  EXPECT_EQ(DTypeToConfig(DType::kF16), "float16");
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kI64), 8);
}

TEST(DTypeTest, Bf16KnownPatterns) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToBf16(0.0f), 0x0000);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBf16(kInf), 0x7f80);
  EXPECT_EQ(FloatToBf16(-kInf), 0xff80);
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x7f7fffffu)), 0x7f80);  // FLT_MAX rounds to inf
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x00010000u)), 0x0001);  // subnormal
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x00008000u)), 0x0000);  // half the smallest, tie to even
  const uint16_t nan = FloatToBf16(kNaN);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(nan)));
  // A NaN whose payload lives only in the low bits must not round into infinity.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(BitsToFloat(0x7f800001u)))));
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0x0001), BitsToFloat(0x00010000u));
}

TEST(DTypeTest, Bf16ExhaustiveRoundTripAndMidpoints) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToBf16(f), h) << std::hex << h;
    const uint32_t next = h + 1;
    if ((h & 0x7fff) >= 0x7f7f) continue;  // no finite successor
    // The midpoint to the next pattern (same sign) rounds to the even one of the two.
    const float mid = BitsToFloat((h << 16) | 0x8000u);
    ASSERT_EQ(FloatToBf16(mid), (h & 1) ? next : h) << std::hex << h;
  }
}

TEST(DTypeTest, F16KnownPatterns) {
  EXPECT_EQ(FloatToF16(1.0f), 0x3c00);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7bff);  // max finite
  EXPECT_EQ(FloatToF16(65519.0f), 0x7bff);  // below the midpoint to 65536
  EXPECT_EQ(FloatToF16(65520.0f), 0x7c00);  // the midpoint rounds to inf
  EXPECT_EQ(FloatToF16(1.0f / 3.0f), 0x3555);
  EXPECT_EQ(FloatToF16(0.1f), 0x2e66);
  EXPECT_EQ(FloatToF16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(FloatToF16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 steps: tie to even (2)
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -30)), 0x0000);  // underflow
  EXPECT_EQ(FloatToF16(kInf), 0x7c00);
  EXPECT_EQ(FloatToF16(-1e30f), 0xfc00);
  EXPECT_EQ(FloatToF16(kNaN) & 0x7e00, 0x7e00);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(F16ToFloat(0x7c00), kInf);
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
}

TEST(DTypeTest, F16ExhaustiveRoundTripAndMidpoints) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToF16(f), h) << std::hex << h;
    if ((h & 0x7fff) >= 0x7bff) continue;
    const float mid = (f + F16ToFloat(static_cast<uint16_t>(h + 1))) / 2;  // exact in float
    ASSERT_EQ(FloatToF16(mid), (h & 1) ? h + 1 : h) << std::hex << h;
  }
}

TEST(DTypeTest, Fp8E4M3KnownPatterns) {
  EXPECT_EQ(Fp8E4M3ToFloat(0x38), 1.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x7e), 448.0f);  // max finite: 2^8 * 1.75
  EXPECT_EQ(Fp8E4M3ToFloat(0xfe), -448.0f);
  EXPECT_EQ(Fp8E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(Fp8E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(Fp8E4M3ToFloat(0x07), std::ldexp(7.0f, -9));
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0xff)));
  EXPECT_EQ(FloatToFp8E4M3(1.0f), 0x38);
  EXPECT_EQ(FloatToFp8E4M3(448.0f), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(460.0f), 0x7e);   // below the 464 midpoint
  EXPECT_EQ(FloatToFp8E4M3(1000.0f), 0x7e);  // saturates, never NaN
  EXPECT_EQ(FloatToFp8E4M3(kInf), 0x7e);
  EXPECT_EQ(FloatToFp8E4M3(-1e9f), 0xfe);
  EXPECT_EQ(FloatToFp8E4M3(kNaN) & 0x7f, 0x7f);
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(1.0f, -10)), 0x00);   // half the smallest subnormal: tie to 0
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(3.0f, -10)), 0x02);   // 1.5 steps: tie to even
  EXPECT_EQ(FloatToFp8E4M3(std::ldexp(15.0f, -10)), 0x08);  // 7.5 steps rounds into the normals
  EXPECT_EQ(FloatToFp8E4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToFp8E4M3(1.0625f), 0x38);  // tie between 1 and 1.125: even mantissa
  EXPECT_EQ(FloatToFp8E4M3(1.1875f), 0x3a);  // tie between 1.125 and 1.25: even mantissa
}

TEST(DTypeTest, Fp8ExhaustiveRoundTripAndMidpoints) {
  for (uint32_t b = 0; b < 256; ++b) {
    const float f = Fp8E4M3ToFloat(static_cast<uint8_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToFp8E4M3(f), b) << std::hex << b;
    if ((b & 0x7f) >= 0x7e) continue;
    const float mid = (f + Fp8E4M3ToFloat(static_cast<uint8_t>(b + 1))) / 2;
    ASSERT_EQ(FloatToFp8E4M3(mid), (b & 1) ? b + 1 : b) << std::hex << b;
  }
}

TEST(DTypeTest, Ue8m0Scales) {
  EXPECT_EQ(Ue8m0ToFloat(127), 1.0f);
  EXPECT_EQ(Ue8m0ToFloat(119), std::ldexp(1.0f, -8));
  EXPECT_EQ(Ue8m0ToFloat(254), std::ldexp(1.0f, 127));
  EXPECT_EQ(Ue8m0ToFloat(1), std::ldexp(1.0f, -126));
  EXPECT_EQ(Ue8m0ToFloat(0), std::ldexp(1.0f, -127));  // a float subnormal
  EXPECT_TRUE(std::isnan(Ue8m0ToFloat(255)));
  // A block value: e4m3 byte times its scale.
  EXPECT_EQ(Fp8E4M3ToFloat(0x7e) * Ue8m0ToFloat(119), 1.75f);
}

}  // namespace
}  // namespace engram
