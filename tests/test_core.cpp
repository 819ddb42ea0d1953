#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/rng.h"
#include "topk/core.h"

using namespace topk;

TEST(Dtype, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);  // halfway, odd below: rounds up
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(INFINITY)), INFINITY);
  Rng rng(1);
  for (int i = 0; i < 10000; i++) {
    float x = rng.normal() * 100;
    float y = bf16_to_f32(f32_to_bf16(x));
    EXPECT_LE(std::abs(x - y), std::abs(x) * 0x1p-8f);
  }
}

TEST(Dtype, F16MatchesCompilerConversion) {
  Rng rng(2);
  for (int i = 0; i < 200000; i++) {
    float x = rng.normal() * std::pow(10.0f, float(int(rng.below(16)) - 10));
    _Float16 h = (_Float16)x;
    uint16_t bits;
    std::memcpy(&bits, &h, 2);
    ASSERT_EQ(f32_to_f16(x), bits) << x;
    ASSERT_EQ(f16_to_f32(bits), float(h)) << x;
  }
  EXPECT_EQ(f16_to_f32(f32_to_f16(1e6f)), INFINITY);
}

TEST(Tensor, ViewsBuffersAndCopy) {
  Buffer a(DType::f32, {2, 3, 4});
  EXPECT_EQ(a.numel(), 24);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.ptr<float>()) % 64, 0u);
  EXPECT_TRUE(a.view().is_contiguous());
  EXPECT_EQ(a.view().stride[0], 12);
  for (int i = 0; i < 24; i++) a.ptr<float>()[i] = float(i) + 0.5f;
  // A strided view (every other row of dim 1 is skipped) copies into a packed bf16 buffer.
  TensorView s = a.view();
  s.shape[1] = 2;
  s.stride[1] = 8;
  EXPECT_FALSE(s.is_contiguous());
  Buffer b(DType::bf16, {2, 2, 4});
  copy(b, s);
  EXPECT_EQ(bf16_to_f32(b.ptr<uint16_t>()[4]), 8.5f);
  EXPECT_EQ(b.view().str(), "bf16[2, 2, 4]");
  Buffer c(DType::i32, {2});
  EXPECT_THROW(copy(c, Buffer(DType::f32, {2})), Error);
  EXPECT_THROW(copy(a, b), Error);  // shape mismatch
}

TEST(Rng, SameSeedSameStream) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; i++) EXPECT_EQ(a.next(), b.next());
  EXPECT_NE(Rng(42).next(), c.next());
  EXPECT_EQ(Rng(7).next(), 0xb358faf74ef9765aull);  // the stream is part of the format: seeds reproduce runs
}
