// The selection rule of attention/select_rule.h, which ref, cpu and cuda all compile: the budget
// (docs/semantics.md, "Budget"), the forced keys and the order of scores.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "attention/select_rule.h"

using namespace topk;

TEST(SelectRule, BudgetCountRatioFloorAndClamp) {
  EXPECT_EQ(budget_of(5, 0, 0, 100), 5);
  EXPECT_EQ(budget_of(5, 0, 0, 3), 3);      // never more than the visible keys
  EXPECT_EQ(budget_of(5, 0, 0, 0), 0);      // nothing visible
  EXPECT_EQ(budget_of(0, 0.07, 0, 100), 7);  // 0.07 * 100 = 7.000000000000001 in binary
  EXPECT_EQ(budget_of(0, 0.1, 0, 30), 3);    // 0.1 * 30 = 3.0000000000000004
  EXPECT_EQ(budget_of(0, 0.07, 0, 101), 8);  // 7.07 rounds up
  EXPECT_EQ(budget_of(0, 0.001, 0, 10), 1);  // at least one key
  EXPECT_EQ(budget_of(0, 0.01, 16, 100), 16);  // min_k floor
  EXPECT_EQ(budget_of(0, 0.01, 16, 9), 9);     // then the clamp
  EXPECT_EQ(budget_of(0, 1.0, 0, 12345), 12345);
  // ceil(ratio n) for every n up to 4096 at a few ratios, away from the tolerance's reach.
  for (double r : {0.005, 0.01, 0.02, 0.05, 0.3})
    for (int64_t n = 1; n <= 4096; n++) {
      const double x = r * double(n);
      const double near = std::round(x);
      if (std::fabs(x - near) < 1e-6 * x) continue;  // integral up to rounding: the tolerance rules
      int64_t want = int64_t(std::ceil(x));
      want = want < 1 ? 1 : (want > n ? n : want);
      ASSERT_EQ(budget_of(0, r, 0, n), want) << "ratio " << r << " n " << n;
    }
}

TEST(SelectRule, ForcedKeysAndTheRest) {
  // n = 20, W = 6, sink 2, window 3: 5 forced keys, 1 chosen among the 15 between them.
  RowSel r = row_sel(6, 0, 0, 2, 3, 20);
  EXPECT_EQ(r.lo, 2);
  EXPECT_EQ(r.hi, 17);
  EXPECT_EQ(r.m, 15);
  EXPECT_EQ(r.forced, 5);
  EXPECT_EQ(r.take, 1);
  // Forced keys beyond W are all kept and nothing else competes.
  r = row_sel(3, 0, 0, 2, 3, 20);
  EXPECT_EQ(r.forced, 5);
  EXPECT_EQ(r.take, 0);
  // Sink and window overlap: every key is forced once.
  r = row_sel(2, 0, 0, 4, 4, 6);
  EXPECT_EQ(r.forced, 6);
  EXPECT_EQ(r.m, 0);
  EXPECT_EQ(r.take, 0);
  // No forced keys: W of the n compete.
  r = row_sel(0, 0.5, 0, 0, 0, 9);
  EXPECT_EQ(r.forced, 0);
  EXPECT_EQ(r.m, 9);
  EXPECT_EQ(r.take, 5);
  // A room larger than the competing keys takes them all.
  r = row_sel(10, 0, 0, 1, 1, 6);
  EXPECT_EQ(r.take, 4);
}

TEST(SelectRule, OrderKeyFollowsTheScoreOrder) {
  const float inf = std::numeric_limits<float>::infinity();
  const float den = std::numeric_limits<float>::denorm_min(), big = std::numeric_limits<float>::max();
  // Strictly increasing scores give strictly increasing keys.
  const std::vector<float> up = {-inf, -big, -1e10f, -1.5f, -1.0f, -1e-30f, -den, 0.0f,
                                 den, 1e-30f, 1.0f, 1.5f, 1e10f, big, inf};
  for (size_t i = 1; i < up.size(); i++)
    EXPECT_LT(order_key(up[i - 1]), order_key(up[i])) << up[i - 1] << " < " << up[i];
  EXPECT_EQ(order_key(-0.0f), order_key(0.0f));  // -0 equals +0
  // NaN ranks below every number, -inf included.
  for (float nan : {std::nanf(""), -std::nanf("")}) {
    EXPECT_EQ(order_key(nan), 0u);
    EXPECT_LT(order_key(nan), order_key(-inf));
  }
}

TEST(SelectRule, KeyFloorIsTheLeastPassingScore) {
  const float inf = std::numeric_limits<float>::infinity();
  const float den = std::numeric_limits<float>::denorm_min(), big = std::numeric_limits<float>::max();
  std::vector<float> xs = {-inf, -big, -1e10f, -1.5f, -1.0f, -1e-30f, -den, -0.0f, 0.0f,
                           den, 1e-30f, 1.0f, 1.5f, 1e10f, big, inf};
  std::vector<uint32_t> ts = {1u, 0x007ffffeu, 0x007fffffu, 0x00800000u, 0x7ffffffeu, 0x7fffffffu,
                              0x80000000u, 0x80000001u, 0xff7fffffu, 0xff800000u, 0xff800001u,
                              0xffffffffu};
  for (float x : xs) {
    ts.push_back(order_key(x));
    ts.push_back(order_key(x) - 1);
    ts.push_back(order_key(x) + 1);
  }
  uint64_t r = 12345;
  for (int i = 0; i < 2000; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t bits = uint32_t(r >> 32);
    float x;
    std::memcpy(&x, &bits, 4);
    if (x == x) xs.push_back(x);
    ts.push_back(uint32_t(r >> 16));
    ts.push_back(uint32_t(r >> 32) & 0xffff0000u);  // the 16-bit bin edges a sampled filter uses
  }
  for (uint32_t t : ts) {
    if (t == 0) continue;
    const float f = key_floor(t);
    for (float x : xs)
      ASSERT_EQ(order_key(x) >= t, x >= f) << "t=" << t << " x=" << x << " floor=" << f;
  }
}

TEST(SelectRule, UnscaledFloorMatchesTheScaledTest) {
  const float inf = std::numeric_limits<float>::infinity();
  const float den = std::numeric_limits<float>::denorm_min(), big = std::numeric_limits<float>::max();
  const std::vector<float> edges = {-inf, -big, -1.5f, -den, -0.0f, 0.0f,
                                    den,  1e-30f, 1.0f, big,  inf};
  // 1/sqrt(D) for D = 64, 128, 256, and scales far from them.
  const std::vector<float> scales = {0.125f, 0.0883883476f, 0.0625f, 1.0f,
                                     0.3f,   3.7f,          1e-20f,  1e20f};
  uint64_t r = 777;
  auto next = [&r] {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(r >> 32);
  };
  for (float scale : scales)
    for (int i = 0; i < 3000; i++) {
      // Floors as a filter gets them: key_floor of a random key, of a 16-bit bin edge, or an edge.
      const uint32_t t = i % 3 == 0   ? next()
                         : i % 3 == 1 ? next() & 0xffff0000u
                                      : order_key(edges[i % edges.size()]);
      if (t == 0) continue;
      const float f = key_floor(t), u = unscaled_floor(f, scale);
      std::vector<float> xs = edges;
      for (int j = 0; j < 8; j++) {
        const uint32_t bits = next();
        float x;
        std::memcpy(&x, &bits, 4);
        xs.push_back(x);
        xs.push_back(f / scale * (1.0f + float(int(next() % 9) - 4) * 1e-7f));
      }
      if (u == u) {
        xs.push_back(u);
        xs.push_back(std::nextafter(u, -inf));
        xs.push_back(std::nextafter(u, inf));
      }
      for (float x : xs)
        ASSERT_EQ(x * scale >= f, x >= u)
            << "f=" << f << " scale=" << scale << " x=" << x << " u=" << u;
    }
}
