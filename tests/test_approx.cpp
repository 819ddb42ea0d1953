// The approximate selectors' score ops (include/topk/approx.h) on the CPU against the scalar
// reference, and the reference against the definitions: the Lightning Indexer's scores, its
// attention and its distillation loss (with the gradient checked by central differences), Quest's
// page bounds (never below a page's exact scores), quantised-key scores and score masking; and
// the indexer's FP8 key cache: the E4M3 codec, the quantisation, the scores over FP8 keys.
#include <cmath>
#include <limits>

#include "attention/approx.h"
#include "core/fp8.h"
#include "cpu_test_util.h"
#include "topk/approx.h"

namespace topk::test {
namespace {

// The indexer's inputs for a case: qi [B, T, HI, dI], w [B, T, HI], ki [B, S, 1, dI].
struct Ix {
  Buffer qi, w, ki;
};
Ix random_ix(const Case& c, int HI, int dI, Rng& rng) {
  Ix x{randn(c.dt, {c.B, c.T, HI, dI}, rng), randn(DType::f32, {c.B, c.T, HI}, rng, 0.5f),
       randn(c.dt, {c.B, c.S, 1, dI}, rng)};
  return x;
}

std::vector<Case> layouts() {
  std::vector<Case> cs;
  cs.push_back({"decode", 2, 1, 300, 4, 2, 16, true});
  cs.push_back({"prefill", 1, 40, 40, 4, 2, 16, true});
  cs.push_back({"bf16", 2, 3, 70, 4, 1, 16, true, DType::bf16});
  cs.push_back({"noncausal", 2, 2, 33, 2, 2, 8, false});
  add_layout_cases(cs);
  for (Case& c : cs)
    if (c.name == "ragged" || c.name == "packed" || c.name == "q_pos") c.D = 16;
  return cs;
}

class ApproxCpu : public IsaTest {};

TEST_P(ApproxCpu, IndexerScoresMatchReference) {
  Rng rng(5);
  for (const Case& c : layouts())
    for (auto [HI, dI] : {std::pair{4, 16}, {5, 8}, {1, 64}}) {
      SCOPED_TRACE(case_name(c) + " HI=" + std::to_string(HI) + " dI=" + std::to_string(dI));
      Ix x = random_ix(c, HI, dI, rng);
      Buffer s1(DType::f32, {c.B, c.T, 1, c.S}), s2(DType::f32, {c.B, c.T, 1, c.S});
      indexer_scores(x.qi, x.w, x.ki, c.seqs(), c.opts(Backend::ref), s1);
      indexer_scores(x.qi, x.w, x.ki, c.seqs(), c.opts(Backend::cpu), s2);
      expect_close(to_vec(s2), to_vec(s1), 2e-5, 2e-5, "indexer scores");
    }
}

// The reference against the formula, term by term, on a tiny causal case.
TEST(ApproxRef, IndexerScoresAreTheDefinition) {
  Rng rng(9);
  Case c{"tiny", 1, 3, 3, 1, 1, 4, true};
  Ix x = random_ix(c, 2, 4, rng);
  Buffer s(DType::f32, {1, 3, 1, 3});
  indexer_scores(x.qi, x.w, x.ki, c.seqs(), c.opts(Backend::ref), s);
  const float* qi = x.qi.ptr<float>();
  const float* w = x.w.ptr<float>();
  const float* ki = x.ki.ptr<float>();
  for (int t = 0; t < 3; t++)
    for (int j = 0; j < 3; j++) {
      double I = 0;
      for (int h = 0; h < 2; h++) {
        double d = 0;
        for (int e = 0; e < 4; e++) d += double(qi[(t * 2 + h) * 4 + e]) * ki[j * 4 + e];
        I += w[t * 2 + h] * std::max(d, 0.0);
      }
      const float got = s.ptr<float>()[t * 3 + j];
      if (j > t) EXPECT_EQ(got, -INFINITY);
      else EXPECT_NEAR(got, I, 1e-5);
    }
}

TEST_P(ApproxCpu, IndexerAttentionIsScoresSelectAttend) {
  Rng rng(17);
  for (const Case& c : layouts()) {
    SCOPED_TRACE(case_name(c));
    Qkv in = random_qkv(c, rng);
    Ix x = random_ix(c, 4, 16, rng);
    SelectOpts sel;
    sel.k = 7;
    const int64_t K = select_capacity(sel, c.S);
    Buffer o(DType::f32, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
    Buffer idx(DType::i32, {c.B, c.T, c.Hkv, K});
    indexer_attention_forward(in.q, in.k, in.v, x.qi, x.w, x.ki, c.seqs(), c.opts(Backend::cpu),
                              sel, o, lse, idx);
    // The composition by hand, on the reference backend.
    Buffer sc(DType::f32, {c.B, c.T, 1, c.S}), one(DType::i32, {c.B, c.T, 1, K});
    indexer_scores(x.qi, x.w, x.ki, c.seqs(), c.opts(Backend::ref), sc);
    topk_select(sc, c.seqs(), c.opts(Backend::ref), sel, one);
    Buffer all(DType::i32, {c.B, c.T, c.Hkv, K});
    for (int64_t r = 0; r < c.B * c.T; r++)
      for (int h = 0; h < c.Hkv; h++)
        std::copy_n(one.ptr<int32_t>() + r * K, K, all.ptr<int32_t>() + (r * c.Hkv + h) * K);
    Buffer o2(DType::f32, {c.B, c.T, c.Hq, c.D}), lse2(DType::f32, {c.B, c.T, c.Hq});
    sparse_attention_forward(in.q, in.k, in.v, all, c.seqs(), c.opts(Backend::ref), o2, lse2);
    // Compare the rows the sequences own (padding rows are not written by either).
    if (c.cu_q.empty() && c.seqlens_k.empty()) {
      EXPECT_EQ(ivec(idx), ivec(all));
      expect_close(to_vec(o), to_vec(o2), 2e-5, 2e-6, "o");
      expect_close(to_vec(lse), to_vec(lse2), 2e-5, 2e-6, "lse");
    }
  }
}

// The loss's inputs: the target attention's q, k and lse (full, or sparse over the list).
struct LossCase {
  Case c;
  Qkv in;
  Ix x;
  Buffer lse, idx;  // idx empty for the dense loss
};

LossCase loss_case(const Case& c, int HI, int dI, bool sparse, Rng& rng) {
  LossCase lc{c, random_qkv(c, rng), random_ix(c, HI, dI, rng), Buffer(DType::f32, {c.B, c.T, c.Hq}), {}};
  Buffer o(DType::f32, {c.B, c.T, c.Hq, c.D});
  if (!sparse) {
    attention_forward(lc.in.q, lc.in.k, lc.in.v, c.seqs(), c.opts(Backend::ref), o, lc.lse);
    return lc;
  }
  // A list with invalid entries, keys the row does not see, duplicates and an empty row.
  const int64_t K = 9;
  lc.idx = Buffer(DType::i32, {c.B, c.T, 1, K});
  int32_t* p = lc.idx.ptr<int32_t>();
  for (int64_t i = 0; i < lc.idx.numel(); i++) {
    int32_t j = int32_t(rng.below(uint64_t(c.S) + 4)) - 2;
    if (i % 5 == 2) j = p[i - 1];
    if (i < K) j = -1;  // the first row lists no valid key: loss 0, no gradient
    p[i] = j;
  }
  Buffer all(DType::i32, {c.B, c.T, c.Hkv, K});
  for (int64_t r = 0; r < c.B * c.T; r++)
    for (int h = 0; h < c.Hkv; h++) std::copy_n(p + r * K, K, all.ptr<int32_t>() + (r * c.Hkv + h) * K);
  sparse_attention_forward(lc.in.q, lc.in.k, lc.in.v, all, c.seqs(), c.opts(Backend::ref), o, lc.lse);
  return lc;
}

struct LossOut {
  Buffer loss, dqi, dw, dki;
};
LossOut run_loss(LossCase& lc, Backend b, bool grads) {
  const Case& c = lc.c;
  const int64_t HI = lc.x.qi.view().shape[2], dI = lc.x.qi.view().shape[3];
  LossOut r{Buffer(DType::f32, {c.B, c.T}), Buffer(DType::f32, {c.B, c.T, HI, dI}),
            Buffer(DType::f32, {c.B, c.T, HI}), Buffer(DType::f32, {c.B, c.S, 1, dI})};
  indexer_loss(lc.in.q, lc.in.k, lc.lse, lc.x.qi, lc.x.w, lc.x.ki, lc.idx.view(), c.seqs(),
               c.opts(b), r.loss, grads ? r.dqi.view() : TensorView{},
               grads ? r.dw.view() : TensorView{}, grads ? r.dki.view() : TensorView{});
  return r;
}

TEST_P(ApproxCpu, IndexerLossMatchesReference) {
  Rng rng(23);
  for (bool sparse : {false, true})
    for (const Case& c : layouts()) {
      if (c.dt != DType::f32) continue;
      SCOPED_TRACE(case_name(c) + (sparse ? " sparse" : " dense"));
      LossCase lc = loss_case(c, 4, 16, sparse, rng);
      LossOut a = run_loss(lc, Backend::ref, true), b = run_loss(lc, Backend::cpu, true);
      // Rows the sequences own; packed/ragged padding rows are left as they are.
      expect_close(to_vec(b.loss), to_vec(a.loss), 1e-4, 1e-5, "loss");
      if (c.cu_q.empty() && c.seqlens_k.empty()) {
        expect_close(to_vec(b.dqi), to_vec(a.dqi), 1e-4, 1e-5, "dqi");
        expect_close(to_vec(b.dw), to_vec(a.dw), 1e-4, 1e-5, "dw");
      }
      expect_close(to_vec(b.dki), to_vec(a.dki), 1e-4, 1e-5, "dki");
      for (float l : to_vec(a.loss)) EXPECT_GE(l, -1e-6f);
    }
}

// The reference gradient against central differences of the reference loss (double inside, so
// small steps are exact enough), dense and sparse.
TEST(ApproxRef, IndexerLossGradientIsFiniteDifferences) {
  Rng rng(31);
  for (bool sparse : {false, true}) {
    SCOPED_TRACE(sparse ? "sparse" : "dense");
    Case c{"grad", 2, 5, 6, 2, 1, 8, true};
    LossCase lc = loss_case(c, 3, 4, sparse, rng);
    LossOut g = run_loss(lc, Backend::ref, true);
    auto total = [&]() {
      LossOut r = run_loss(lc, Backend::ref, false);
      double s = 0;
      for (float l : to_vec(r.loss)) s += l;
      return s;
    };
    int checked = 0;
    for (auto [buf, grad] : {std::pair{&lc.x.qi, &g.dqi}, {&lc.x.w, &g.dw}, {&lc.x.ki, &g.dki}}) {
      float* v = buf->ptr<float>();
      for (int probe = 0; probe < 12; probe++) {
        const int64_t i = int64_t(rng.below(uint64_t(buf->numel())));
        const float v0 = v[i], eps = 1e-3f;
        v[i] = v0 + eps;
        const double lp = total();
        v[i] = v0 - eps;
        const double lm = total();
        v[i] = v0;
        const double num = (lp - lm) / (2.0 * eps), ana = grad->ptr<float>()[i];
        EXPECT_NEAR(ana, num, 2e-3 + 2e-2 * std::fabs(num)) << "element " << i;
        checked++;
      }
    }
    EXPECT_EQ(checked, 36);
  }
}

// A row whose key set is one key has loss 0 (both distributions are that key) and no gradient.
TEST(ApproxRef, IndexerLossOfOneKeyIsZero) {
  Rng rng(3);
  Case c{"one", 1, 1, 1, 2, 1, 8, true};
  LossCase lc = loss_case(c, 2, 4, false, rng);
  LossOut r = run_loss(lc, Backend::cpu, true);
  EXPECT_NEAR(r.loss.ptr<float>()[0], 0.0f, 1e-7);
  for (float x : to_vec(r.dki)) EXPECT_NEAR(x, 0.0f, 1e-7);
}

TEST_P(ApproxCpu, QuestScoresMatchReferenceAndBoundExactScores) {
  Rng rng(41);
  for (const Case& c : layouts())
    for (int page : {1, 4, 16}) {
      SCOPED_TRACE(case_name(c) + " page=" + std::to_string(page));
      Qkv in = random_qkv(c, rng);
      const int64_t P = (c.S + page - 1) / page + 1;  // one spare column: -inf
      Buffer s1(DType::f32, {c.B, c.T, c.Hq, P}), s2(DType::f32, {c.B, c.T, c.Hq, P});
      quest_scores(in.q, in.k, c.seqs(), c.opts(Backend::ref), page, s1);
      quest_scores(in.q, in.k, c.seqs(), c.opts(Backend::cpu), page, s2);
      expect_close(to_vec(s2), to_vec(s1), 2e-5, 2e-5, "quest");
      if (!c.cu_q.empty()) continue;
      Buffer ex(DType::f32, {c.B, c.T, c.Hq, c.S});
      attention_scores(in.q, in.k, c.seqs(), c.opts(Backend::ref), ex);
      const float* e = ex.ptr<float>();
      const float* u = s1.ptr<float>();
      for (int64_t r = 0; r < c.B * c.T * c.Hq; r++)
        for (int64_t j = 0; j < c.S; j++)
          if (std::isfinite(e[r * c.S + j])) {
            ASSERT_GE(u[r * P + j / page], e[r * c.S + j] - 1e-5f) << "row " << r << " key " << j;
          }
      // page = 1: the bound is the exact score.
      if (page == 1) {
        for (int64_t r = 0; r < c.B * c.T * c.Hq; r++)
          for (int64_t j = 0; j < c.S; j++) {
            if (std::isfinite(e[r * c.S + j])) {
              ASSERT_NEAR(u[r * P + j], e[r * c.S + j], 1e-5);
            }
          }
      }
    }
}

TEST_P(ApproxCpu, QuantizedScoresMatchReference) {
  Rng rng(43);
  for (const Case& c : layouts())
    for (int bits : {8, 4}) {
      SCOPED_TRACE(case_name(c) + " bits=" + std::to_string(bits));
      Qkv in = random_qkv(c, rng);
      Buffer s1(DType::f32, {c.B, c.T, c.Hq, c.S}), s2(DType::f32, {c.B, c.T, c.Hq, c.S});
      quantized_scores(in.q, in.k, c.seqs(), c.opts(Backend::ref), bits, s1);
      quantized_scores(in.q, in.k, c.seqs(), c.opts(Backend::cpu), bits, s2);
      expect_close(to_vec(s2), to_vec(s1), 2e-5, 2e-5, "quantized");
      if (!c.cu_q.empty() || bits != 8) continue;
      // int8 keys: close to the exact scores (each element within half a step of amax / 127).
      Buffer ex(DType::f32, {c.B, c.T, c.Hq, c.S});
      attention_scores(in.q, in.k, c.seqs(), c.opts(Backend::ref), ex);
      expect_close(to_vec(s1), to_vec(ex), 0, 0.15, "int8 vs exact");
    }
}

TEST(ApproxRef, QuantizedKeysAreRoundedSymmetrically) {
  // One key row of D = 4: a = 2, int4 step 2/7; elements round to multiples of it.
  Case c{"q", 1, 1, 1, 1, 1, 4, false};
  Buffer q(DType::f32, {1, 1, 1, 4}), k(DType::f32, {1, 1, 1, 4}), s(DType::f32, {1, 1, 1, 1});
  const float kv[4] = {2.0f, -0.5f, 0.15f, -2.0f};
  for (int d = 0; d < 4; d++) k.ptr<float>()[d] = kv[d];
  for (int d = 0; d < 4; d++) {
    std::fill_n(q.ptr<float>(), 4, 0.0f);
    q.ptr<float>()[d] = 2.0f;  // scale 1/2: the score is the rounded element
    quantized_scores(q, k, c.seqs(), c.opts(Backend::cpu), 4, s);
    const float step = 2.0f / 7.0f;
    EXPECT_FLOAT_EQ(s.ptr<float>()[0], step * std::round(kv[d] / step)) << d;
  }
}

TEST_P(ApproxCpu, MaskScoresKeepsOnlyListedEntries) {
  Rng rng(47);
  const int B = 2, T = 3, H = 4, S = 50, C = 7;
  for (int hsel : {1, 2, 4}) {
    Buffer s1 = randn(DType::f32, {B, T, H, S}, rng);
    Buffer s2(DType::f32, {B, T, H, S});
    std::copy_n(s1.ptr<float>(), s1.numel(), s2.ptr<float>());
    Buffer idx(DType::i32, {B, T, hsel, C});
    for (int64_t i = 0; i < idx.numel(); i++) idx.ptr<int32_t>()[i] = int32_t(rng.below(S + 6)) - 3;
    MaskParams mp;
    mp.R = B * T, mp.H = H, mp.S = S, mp.Hsel = hsel, mp.C = C;
    mp.scores = s1.ptr<float>();
    mp.idx = idx.ptr<int32_t>();
    ref::mask_scores(mp);
    mask_scores(s2, idx);
    EXPECT_TRUE(bit_equal(s1, s2));
    int kept = 0;
    for (float x : to_vec(s1)) kept += std::isfinite(x);
    EXPECT_GT(kept, 0);
    EXPECT_LE(kept, B * T * H * C);
  }
}

// ---- FP8 indexer keys ----

// E4M3 by its definition: (-1)^s (8 + m) 2^(e - 10) for e >= 1, m 2^-9 for e = 0; 0x7f NaN.
double e4m3_value(int c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const double mag = e == 0 ? std::ldexp(double(m), -9) : std::ldexp(double(8 + m), e - 10);
  return (c & 0x80) ? -mag : mag;
}

TEST(Fp8, DecodeIsTheDefinitionAndEncodeInvertsIt) {
  for (int c = 0; c < 256; c++) {
    SCOPED_TRACE(c);
    const float f = fp8e4m3_to_f32(uint8_t(c));
    if ((c & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_EQ(f32_to_fp8e4m3(f) & 0x7f, 0x7f);
      continue;
    }
    EXPECT_EQ(double(f), e4m3_value(c));
    EXPECT_EQ(int(f32_to_fp8e4m3(f)), c);  // -0 included: 0x80
  }
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

TEST(Fp8, EncodeRoundsToNearestEvenAndSaturates) {
  // Between neighbours (positive codes c, c + 1): the midpoint goes to the even code, anything
  // off it to the nearer one. Both signs.
  for (int c = 0; c < 0x7e; c++)
    for (float sign : {1.0f, -1.0f}) {
      SCOPED_TRACE(testing::Message() << "c=" << c << " sign=" << sign);
      const float lo = fp8e4m3_to_f32(uint8_t(c)), hi = fp8e4m3_to_f32(uint8_t(c + 1));
      const float mid = (lo + hi) / 2;  // exact: at most 5 significant bits
      const int sb = sign < 0 ? 0x80 : 0;
      EXPECT_EQ(int(f32_to_fp8e4m3(sign * mid)), sb | ((c & 1) ? c + 1 : c));
      EXPECT_EQ(int(f32_to_fp8e4m3(sign * std::nextafter(mid, hi))), sb | (c + 1));
      EXPECT_EQ(int(f32_to_fp8e4m3(sign * std::nextafter(mid, lo))), sb | c);
    }
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {448.0f, 460.0f, 464.0f, 500.0f, 1e30f, inf}) {
    EXPECT_EQ(int(f32_to_fp8e4m3(x)), 0x7e) << x;
    EXPECT_EQ(int(f32_to_fp8e4m3(-x)), 0xfe) << x;
  }
  EXPECT_EQ(int(f32_to_fp8e4m3(std::ldexp(1.0f, -11))), 0);     // under half the least subnormal
  EXPECT_EQ(int(f32_to_fp8e4m3(std::ldexp(1.0f, -149))), 0);    // f32's least subnormal
  EXPECT_EQ(int(f32_to_fp8e4m3(std::ldexp(3.0f, -11))), 0x01);  // 0.75 of the least: rounds up
  EXPECT_EQ(int(f32_to_fp8e4m3(std::nanf(""))) & 0x7f, 0x7f);
}

// indexer_quantize_keys on the CPU: each row's scale is amax / 448, its bytes the E4M3 of
// x / scale (the largest element at +-448), the dequantised key within the format's rounding;
// the output may be a strided slice of a larger cache.
TEST(Fp8, QuantizeKeysRowByRow) {
  Rng rng(41);
  const int64_t B = 2, S = 37, dI = 64, cap = 50;
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    Buffer ki = randn(dt, {B, S, 1, dI}, rng, 3.0f);
    std::vector<float> x = to_vec(ki);
    for (int64_t d = 0; d < dI; d++) {  // a zero row, a row of one huge and tiny values
      store_f32(ki.ptr<void>(), dt, 5 * dI + d, 0.0f);
      store_f32(ki.ptr<void>(), dt, 6 * dI + d, d == 3 ? -3e4f : 1e-3f * float(d));
    }
    x = to_vec(ki);
    Buffer cache(DType::f8e4m3, {B, cap, 1, dI}), scales(DType::f32, {B, cap});
    TensorView q8 = cache.view(), sc = scales.view();
    q8.shape[1] = S;
    sc.shape[1] = S;
    indexer_quantize_keys(ki, q8, sc);
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < S; s++) {
        const float* row = x.data() + (b * S + s) * dI;
        float amax = 0;
        for (int64_t d = 0; d < dI; d++) amax = std::max(amax, std::fabs(row[d]));
        const float scale = scales.ptr<float>()[b * cap + s];
        ASSERT_EQ(scale, amax > 0 ? amax / 448.0f : 1.0f) << b << " " << s;
        const uint8_t* q = cache.ptr<uint8_t>() + (b * cap + s) * dI;
        for (int64_t d = 0; d < dI; d++) {
          ASSERT_EQ(int(q[d]), int(f32_to_fp8e4m3(row[d] / scale))) << b << " " << s << " " << d;
          const float back = scale * fp8e4m3_to_f32(q[d]);
          EXPECT_LE(std::fabs(back - row[d]), std::fabs(row[d]) / 16 + scale * std::ldexp(1.0f, -10) * 1.001f);
          if (amax > 0 && std::fabs(row[d]) == amax) {
            EXPECT_EQ(q[d] & 0x7f, 0x7e);
          }
        }
      }
    // Rows past S are untouched.
    for (int64_t i = S * dI; i < cap * dI; i++) ASSERT_EQ(cache.ptr<uint8_t>()[i], 0);
  }
}

TEST_P(ApproxCpu, IndexerScoresOverFp8Keys) {
  Rng rng(43);
  for (const Case& c : layouts())
    for (auto [HI, dI] : {std::pair{4, 16}, {3, 64}}) {
      SCOPED_TRACE(case_name(c) + " HI=" + std::to_string(HI) + " dI=" + std::to_string(dI));
      Ix x = random_ix(c, HI, dI, rng);
      Buffer k8(DType::f8e4m3, {c.B, c.S, 1, dI}), ks(DType::f32, {c.B, c.S});
      indexer_quantize_keys(x.ki, k8, ks);
      // The keys they stand for, in f32: the scores over FP8 keys are the scores over these.
      Buffer kd(DType::f32, {c.B, c.S, 1, dI});
      for (int64_t i = 0; i < kd.numel(); i++)
        kd.ptr<float>()[i] = ks.ptr<float>()[i / dI] * fp8e4m3_to_f32(k8.ptr<uint8_t>()[i]);
      Buffer s_ref(DType::f32, {c.B, c.T, 1, c.S}), s_deq(DType::f32, {c.B, c.T, 1, c.S}),
          s_cpu(DType::f32, {c.B, c.T, 1, c.S});
      indexer_scores(x.qi, x.w, k8, ks, c.seqs(), c.opts(Backend::ref), s_ref);
      indexer_scores(x.qi, x.w, kd, c.seqs(), c.opts(Backend::ref), s_deq);
      indexer_scores(x.qi, x.w, k8, ks, c.seqs(), c.opts(Backend::cpu), s_cpu);
      if (c.cu_q.empty() && c.seqlens_k.empty()) {  // padding rows are not written
        expect_close(to_vec(s_ref), to_vec(s_deq), 1e-6, 1e-6, "fp8 keys vs their f32 values");
        expect_close(to_vec(s_cpu), to_vec(s_ref), 2e-5, 2e-5, "cpu vs ref");
      }
      // The selection and attention over them.
      Qkv in = random_qkv(c, rng);
      SelectOpts sel;
      sel.k = 5;
      const int64_t K = select_capacity(sel, c.S);
      Buffer o(DType::f32, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
      Buffer idx(DType::i32, {c.B, c.T, c.Hkv, K}), one(DType::i32, {c.B, c.T, 1, K});
      indexer_attention_forward(in.q, in.k, in.v, x.qi, x.w, k8, ks, c.seqs(), c.opts(Backend::cpu),
                                sel, o, lse, idx);
      topk_select(s_cpu, c.seqs(), c.opts(Backend::cpu), sel, one);
      if (c.cu_q.empty() && c.seqlens_k.empty()) {
        for (int64_t r = 0; r < c.B * c.T; r++)
          for (int h = 0; h < c.Hkv; h++)
            for (int64_t i = 0; i < K; i++) {
              ASSERT_EQ(idx.ptr<int32_t>()[(r * c.Hkv + h) * K + i], one.ptr<int32_t>()[r * K + i]);
            }
      }
    }
}

TEST(Fp8, IndexerKeysErrors) {
  auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  Buffer qi(DType::f32, {1, 2, 4, 16}), w(DType::f32, {1, 2, 4}), sc(DType::f32, {1, 2, 1, 9});
  Buffer k8(DType::f8e4m3, {1, 9, 1, 16}), kb(DType::bf16, {1, 9, 1, 16}), ks(DType::f32, {1, 9});
  std::string m = error_of([&] { indexer_scores(qi, w, k8, {}, {}, sc); });
  EXPECT_NE(m.find("needs ki_scale"), std::string::npos) << m;
  m = error_of([&] { indexer_scores(qi, w, kb, ks, {}, {}, sc); });
  EXPECT_NE(m.find("scales go with f8e4m3 keys only"), std::string::npos) << m;
  Buffer ks_short(DType::f32, {1, 8}), ks_bf(DType::bf16, {1, 9});
  m = error_of([&] { indexer_scores(qi, w, k8, ks_short, {}, {}, sc); });
  EXPECT_NE(m.find("ki_scale has size 8 in dim 1"), std::string::npos) << m;
  m = error_of([&] { indexer_scores(qi, w, k8, ks_bf, {}, {}, sc); });
  EXPECT_NE(m.find("ki_scale must be f32"), std::string::npos) << m;
  Buffer kf(DType::f32, {1, 9, 1, 16});
  m = error_of([&] { indexer_quantize_keys(kf, kb, ks); });
  EXPECT_NE(m.find("ki8 must be f8e4m3"), std::string::npos) << m;
  m = error_of([&] { indexer_quantize_keys(k8, k8, ks); });
  EXPECT_NE(m.find("ki must be f32, bf16 or f16"), std::string::npos) << m;
  // Training reads float keys only.
  Buffer q(DType::f32, {1, 2, 4, 16}), k(DType::f32, {1, 9, 2, 16}), lse(DType::f32, {1, 2, 4}),
      loss(DType::f32, {1, 2});
  m = error_of([&] { indexer_loss(q, k, lse, qi, w, k8, {}, {}, {}, loss, {}, {}, {}); });
  EXPECT_NE(m.find("ki must be f32, bf16 or f16"), std::string::npos) << m;
}

TOPK_PER_ISA(ApproxCpu);

}  // namespace
}  // namespace topk::test
