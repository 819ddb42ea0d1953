// Every rule of docs/semantics.md, checked on each backend (ref is the specification; the others
// must agree with it rule by rule): the cpu backend on each copy of its kernels (scalar, AVX2,
// AVX-512) in topk_tests, and the cuda backend in topk_cuda_tests, which compiles this file with
// TOPK_SEMANTICS_ON_CUDA. Every op runs through on_backend, so the tests read each backend's
// outputs from the same host tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include "isa_util.h"
#include "sem_util.h"

using namespace topk;
using test::randn;
using test::to_vec;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Head dim of every test: one the CUDA kernels are built for (64, 128), so the same tests run there.
constexpr int kD = 64;

// An op as a callable of any arguments (the ops are overloaded, so not passed by name).
#define OP(fn) [](const auto&... a) { fn(a...); }

// A backend and, for the cpu backend, the copy of its kernels.
struct Path {
  Backend backend;
  cpu::Isa isa;
};
void PrintTo(const Path& p, std::ostream* os) {
  *os << backend_name(p.backend);
  if (p.backend == Backend::cpu) *os << " " << cpu::isa_name(p.isa);
}

// A device tensor of h's dtype and shape holding h's values.
Buffer device_copy(const TensorView& h) {
  const int64_t* s = h.shape;
  Buffer d = h.ndim == 1   ? Buffer(h.dtype, {s[0]}, Device::cuda)
             : h.ndim == 2 ? Buffer(h.dtype, {s[0], s[1]}, Device::cuda)
             : h.ndim == 3 ? Buffer(h.dtype, {s[0], s[1], s[2]}, Device::cuda)
                           : Buffer(h.dtype, {s[0], s[1], s[2], s[3]}, Device::cuda);
  copy(d, h);
  return d;
}

class Semantics : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override {
    if (GetParam().backend == Backend::cpu && !isa_.force(GetParam().isa))
      GTEST_SKIP() << test::isa_skip_reason(GetParam().isa);
    if (GetParam().backend == Backend::cuda && !cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
  // op(args...) on this path's backend. On cuda each tensor argument (a Buffer or a view, empty
  // ones passed as they are) becomes a device copy, copied back into the host tensor after the
  // call: outputs land where the other backends write them, inputs come back unchanged.
  template <class Op, class... A>
  void on_backend(Op op, const A&... args) {
    if (GetParam().backend != Backend::cuda) {
      op(args...);
      return;
    }
    std::vector<std::pair<TensorView, Buffer>> dev;
    dev.reserve(sizeof...(A));
    auto arg = [&](const auto& x) -> decltype(auto) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, Buffer> || std::is_same_v<T, TensorView>) {
        const TensorView& h = x;
        if (h.data == nullptr || h.numel() == 0) return TensorView(h);
        dev.emplace_back(h, device_copy(h));
        return TensorView(dev.back().second.view());
      } else {
        return x;
      }
    };
    op(arg(args)...);
    for (auto& [h, d] : dev) copy(h, d);
  }
  AttnOpts opts(bool causal = false) const {
    AttnOpts o;
    o.causal = causal;
    o.backend = GetParam().backend;
    return o;
  }
  struct Out {
    Buffer o, lse;
  };
  Out full(const Buffer& q, const Buffer& k, const Buffer& v, const Seqs& seqs, bool causal) {
    const TensorView& qv = q.view();
    Out r{Buffer(DType::f32, {qv.shape[0], qv.shape[1], qv.shape[2], qv.shape[3]}),
          Buffer(DType::f32, {qv.shape[0], qv.shape[1], qv.shape[2]})};
    on_backend(OP(attention_forward), q, k, v, seqs, opts(causal), r.o, r.lse);
    return r;
  }
  // Selected key sets of a [1, 1, H, S] score tensor.
  std::vector<std::set<int>> select_sets(const std::vector<float>& s, int H, int S,
                                         const SelectOpts& sel, int hsel, const Seqs& seqs = {}) {
    Buffer scores(DType::f32, {1, 1, H, S});
    std::copy(s.begin(), s.end(), scores.ptr<float>());
    int64_t cap = select_capacity(sel, S);
    Buffer idx(DType::i32, {1, 1, hsel, cap});
    on_backend(OP(topk_select), scores, seqs, opts(), sel, idx);
    std::vector<std::set<int>> out(hsel);
    for (int h = 0; h < hsel; h++) {
      bool seen_pad = false;
      for (int64_t i = 0; i < cap; i++) {
        int x = idx.ptr<int32_t>()[h * cap + i];
        if (x < 0) {
          seen_pad = true;
          continue;
        }
        EXPECT_FALSE(seen_pad) << "selected indices must come before the -1 padding";
        EXPECT_TRUE(out[h].insert(x).second) << "index " << x << " selected twice";
      }
    }
    return out;
  }

 private:
  test::ForcedIsa isa_;
};

std::set<int> range_set(int lo, int hi) {
  std::set<int> s;
  for (int i = lo; i < hi; i++) s.insert(i);
  return s;
}

TEST_P(Semantics, BudgetCountRatioFloorAndClamp) {
  int S = 100;
  std::vector<float> s(S);
  Rng rng(1);
  for (auto& x : s) x = rng.normal();
  auto count = [&](SelectOpts sel, const Seqs& seqs = {}) {
    return select_sets(s, 1, S, sel, 1, seqs)[0].size();
  };
  EXPECT_EQ(count({.k = 5}), 5u);
  EXPECT_EQ(count({.k = 500}), 100u);                  // clamped to the visible keys
  EXPECT_EQ(count({.ratio = 0.07}), 7u);               // ceil(0.07 * 100) = 7, not 8
  EXPECT_EQ(count({.ratio = 0.071}), 8u);              // ceil(7.1) = 8
  EXPECT_EQ(count({.ratio = 0.001}), 1u);              // at least one key
  EXPECT_EQ(count({.ratio = 1.0}), 100u);
  EXPECT_EQ(count({.ratio = 0.01, .min_k = 10}), 10u); // floor
  int32_t len[1] = {3};
  EXPECT_EQ(count({.k = 5}, Seqs{.seqlens_k = len}), 3u);  // only 3 keys visible
  EXPECT_EQ(count({.ratio = 0.5}, Seqs{.seqlens_k = len}), 2u);  // ratio of the visible keys
  EXPECT_EQ(select_capacity({.k = 5}, 100), 5);
  EXPECT_EQ(select_capacity({.k = 5, .sink = 4, .window = 4}, 100), 8);
  EXPECT_EQ(select_capacity({.ratio = 0.25}, 10), 3);
}

TEST_P(Semantics, SelectsHighestScores) {
  std::vector<float> s = {0.5f, 3.0f, -1.0f, 2.0f, 7.0f, 0.0f};
  EXPECT_EQ(select_sets(s, 1, 6, {.k = 3}, 1)[0], (std::set<int>{1, 3, 4}));
}

TEST_P(Semantics, TiesGoToLowerIndex) {
  std::vector<float> flat(10, 1.5f);
  EXPECT_EQ(select_sets(flat, 1, 10, {.k = 4}, 1)[0], range_set(0, 4));
  std::vector<float> s = {1, 5, 3, 5, 3, 3};
  EXPECT_EQ(select_sets(s, 1, 6, {.k = 3}, 1)[0], (std::set<int>{1, 2, 3}));
  // NaN ranks below everything, -inf is still a visible key.
  std::vector<float> odd = {NAN, -kInf, 0.0f, NAN};
  EXPECT_EQ(select_sets(odd, 1, 4, {.k = 2}, 1)[0], (std::set<int>{1, 2}));
}

TEST_P(Semantics, SinkAndWindowAreKeptAndCount) {
  int S = 20;
  std::vector<float> up(S), down(S);
  for (int j = 0; j < S; j++) up[j] = float(j), down[j] = float(-j);
  EXPECT_EQ(select_sets(up, 1, S, {.k = 5, .sink = 2}, 1)[0], (std::set<int>{0, 1, 17, 18, 19}));
  EXPECT_EQ(select_sets(down, 1, S, {.k = 5, .window = 3}, 1)[0], (std::set<int>{0, 1, 17, 18, 19}));
  // Forced keys alone exceed W: exactly they are selected.
  std::set<int> forced = range_set(0, 4);
  for (int j = 16; j < 20; j++) forced.insert(j);
  EXPECT_EQ(select_sets(up, 1, S, {.k = 3, .sink = 4, .window = 4}, 1)[0], forced);
  // Overlapping sink and window on a short row.
  int32_t len[1] = {5};
  EXPECT_EQ(select_sets(up, 1, S, {.k = 2, .sink = 4, .window = 4}, 1, Seqs{.seqlens_k = len})[0],
            range_set(0, 5));
}

TEST_P(Semantics, GroupSharingRanksBySummedProbabilities) {
  // head 0 wants key 0 outright; head 1 splits between keys 1 and 2, slightly preferring 2.
  // Summed probabilities: key0 = 1, key1 = 0.475, key2 = 0.525. Summed scores would pick key 2.
  std::vector<float> s = {0, -100, -100, -100, 0, 0.1f};
  EXPECT_EQ(select_sets(s, 2, 3, {.k = 1, .share_group = true}, 1)[0], (std::set<int>{0}));
  EXPECT_EQ(select_sets(s, 2, 3, {.k = 2, .share_group = true}, 1)[0], (std::set<int>{0, 2}));
  // Per head, each head picks its own best.
  auto per_head = select_sets(s, 2, 3, {.k = 1}, 2);
  EXPECT_EQ(per_head[0], (std::set<int>{0}));
  EXPECT_EQ(per_head[1], (std::set<int>{2}));
}

TEST_P(Semantics, CausalScoresSeeOnlyThePast) {
  int T = 3, S = 5, H = 2, D = kD;
  Buffer q = randn({1, T, H, D}, 2), k = randn({1, S, H, D}, 3);
  Buffer sc(DType::f32, {1, T, H, S});
  on_backend(OP(attention_scores), q, k, Seqs{}, opts(true), sc);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++)
      for (int j = 0; j < S; j++) {
        float x = sc.ptr<float>()[(t * H + h) * S + j];
        if (j <= S - T + t) EXPECT_TRUE(std::isfinite(x)) << t << " " << j;
        else EXPECT_EQ(x, -kInf) << t << " " << j;
      }
  // Explicit position: query 0 at position 1 sees keys 0 and 1 only.
  int32_t pos[1] = {1};
  on_backend(OP(attention_scores), q, k, Seqs{.q_pos = pos}, opts(true), sc);
  for (int j = 0; j < S; j++) EXPECT_EQ(std::isfinite(sc.ptr<float>()[j]), j <= 1) << j;
}

TEST_P(Semantics, DecodeEqualsTailOfCausalPrefill) {
  int S = 37, Hq = 4, Hkv = 2, D = kD, T = 3;
  Buffer q = randn({1, S, Hq, D}, 4), k = randn({1, S, Hkv, D}, 5), v = randn({1, S, Hkv, D}, 6);
  Out pre = full(q, k, v, {}, true);
  // The last T queries as a decode step against the whole cache.
  TensorView qt = q.view();
  qt.data = q.ptr<float>() + int64_t(S - T) * Hq * D;
  qt.shape[1] = T;
  Buffer qd(DType::f32, {1, T, Hq, D});
  copy(qd, qt);
  Out dec = full(qd, k, v, {}, true);
  for (int64_t i = 0; i < dec.o.numel(); i++)
    EXPECT_NEAR(dec.o.ptr<float>()[i], pre.o.ptr<float>()[(S - T) * Hq * D + i], 1e-5);
  // One query at an explicit position 20 against the full cache = prefill row 20.
  Buffer q1(DType::f32, {1, 1, Hq, D});
  std::copy_n(q.ptr<float>() + 20 * Hq * D, Hq * D, q1.ptr<float>());
  int32_t pos[1] = {20};
  Out one = full(q1, k, v, Seqs{.q_pos = pos}, true);
  for (int i = 0; i < Hq * D; i++) EXPECT_NEAR(one.o.ptr<float>()[i], pre.o.ptr<float>()[20 * Hq * D + i], 1e-5);
}

TEST_P(Semantics, PackedSequencesNeverSeeEachOther) {
  int Hq = 2, Hkv = 1, D = kD;
  std::vector<int32_t> cu = {0, 5, 14, 18};
  int N = 18;
  Buffer q = randn({1, N, Hq, D}, 7), k = randn({1, N, Hkv, D}, 8), v = randn({1, N, Hkv, D}, 9);
  Seqs packed{.cu_seqlens_q = cu, .cu_seqlens_k = cu};
  for (bool causal : {false, true}) {
    Out a = full(q, k, v, packed, causal);
    // Each sequence run alone gives the same rows.
    for (int b = 0; b < 3; b++) {
      int n = cu[b + 1] - cu[b];
      auto slice = [&](const Buffer& x, int H) {
        Buffer s(DType::f32, {1, n, H, D});
        std::copy_n(x.ptr<float>() + int64_t(cu[b]) * H * D, n * H * D, s.ptr<float>());
        return s;
      };
      Buffer qs = slice(q, Hq), ks = slice(k, Hkv), vs = slice(v, Hkv);
      Out alone = full(qs, ks, vs, {}, causal);
      for (int i = 0; i < n * Hq * D; i++)
        ASSERT_NEAR(alone.o.ptr<float>()[i], a.o.ptr<float>()[cu[b] * Hq * D + i], 1e-5) << b;
    }
    // Changing sequence 1's keys and values leaves sequences 0 and 2 unchanged, bit for bit.
    Buffer k2 = randn({1, N, Hkv, D}, 8), v2 = randn({1, N, Hkv, D}, 9);
    for (int i = cu[1] * D; i < cu[2] * D; i++) k2.ptr<float>()[i] += 3, v2.ptr<float>()[i] -= 2;
    Out c = full(q, k2, v2, packed, causal);
    for (int r = 0; r < N; r++) {
      bool inside = r >= cu[1] && r < cu[2];
      for (int i = 0; i < Hq * D; i++) {
        float x = a.o.ptr<float>()[r * Hq * D + i], y = c.o.ptr<float>()[r * Hq * D + i];
        if (!inside) {
          ASSERT_EQ(x, y) << "row " << r;
        }
      }
    }
  }
}

TEST_P(Semantics, PackedSelectionCapacityFollowsLongestSequence) {
  int H = 2, D = kD;
  std::vector<int32_t> cu = {0, 30, 40, 100};  // longest sequence: 60 keys
  Buffer q = randn({1, 100, H, D}, 40), k = randn({1, 100, H, D}, 41), v = randn({1, 100, H, D}, 42);
  SelectOpts sel{.ratio = 0.1};
  EXPECT_EQ(select_capacity(sel, 60), 6);
  Buffer o(DType::f32, {1, 100, H, D}), lse(DType::f32, {1, 100, H}), idx(DType::i32, {1, 100, H, 6});
  Seqs packed{.cu_seqlens_q = cu, .cu_seqlens_k = cu};
  on_backend(OP(topk_attention_forward), q, k, v, packed, opts(true), sel, o, lse, idx);
  // The last query of the longest sequence sees 60 keys and selects ceil(0.1 * 60) = 6 of them,
  // all inside its own sequence.
  const int32_t* last = idx.ptr<int32_t>() + (99 * H) * 6;
  for (int i = 0; i < 6; i++) EXPECT_TRUE(last[i] >= 0 && last[i] < 60) << last[i];
  Buffer small(DType::i32, {1, 100, H, 5});
  EXPECT_THROW(on_backend(OP(topk_attention_forward), q, k, v, packed, opts(true), sel, o, lse, small), Error);
}

TEST_P(Semantics, RaggedCacheIgnoresPadding) {
  int S = 16, H = 2, D = kD;
  Buffer q = randn({2, 1, H, D}, 10), k = randn({2, S, H, D}, 11), v = randn({2, S, H, D}, 12);
  // Padding rows of sequence 1 hold NaN: they must never be read into the result.
  for (int j = 7; j < S; j++)
    for (int i = 0; i < H * D; i++)
      k.ptr<float>()[(S + j) * H * D + i] = NAN, v.ptr<float>()[(S + j) * H * D + i] = NAN;
  int32_t lens[2] = {16, 7};
  for (bool causal : {false, true}) {
    Out a = full(q, k, v, Seqs{.seqlens_k = lens}, causal);
    Buffer q1(DType::f32, {1, 1, H, D}), k1(DType::f32, {1, 7, H, D}), v1(DType::f32, {1, 7, H, D});
    std::copy_n(q.ptr<float>() + H * D, H * D, q1.ptr<float>());
    std::copy_n(k.ptr<float>() + S * H * D, 7 * H * D, k1.ptr<float>());
    std::copy_n(v.ptr<float>() + S * H * D, 7 * H * D, v1.ptr<float>());
    Out b = full(q1, k1, v1, {}, causal);
    for (int i = 0; i < H * D; i++) EXPECT_NEAR(a.o.ptr<float>()[H * D + i], b.o.ptr<float>()[i], 1e-5);
    for (int h = 0; h < H; h++) EXPECT_NEAR(a.lse.ptr<float>()[H + h], b.lse.ptr<float>()[h], 1e-5);
  }
}

// Ragged queries (seqlens_q): sequence b is its first seqlens_q[b] query rows against its first
// seqlens_k[b] keys, exactly as if run alone (so its default position is S_b - seqlens_q[b]);
// the rows past it are never read (they hold NaN here) and their outputs never written (they
// keep a sentinel), in every op.
TEST_P(Semantics, RaggedQueriesAreEachSequenceAlone) {
  const int B = 3, T = 5, S = 12, Hq = 4, Hkv = 2, D = kD;
  const float kSentinel = 77.0f;
  int32_t lq[B] = {5, 2, 0}, lk[B] = {12, 7, 4};
  Buffer q = randn({B, T, Hq, D}, 50), k = randn({B, S, Hkv, D}, 51), v = randn({B, S, Hkv, D}, 52);
  Buffer dout = randn({B, T, Hq, D}, 53);
  for (int b = 0; b < B; b++)
    for (int t = lq[b]; t < T; t++)
      for (int i = 0; i < Hq * D; i++)
        q.ptr<float>()[(b * T + t) * Hq * D + i] = NAN, dout.ptr<float>()[(b * T + t) * Hq * D + i] = NAN;
  auto filled = [&](std::initializer_list<int64_t> shape) {
    Buffer x(DType::f32, shape);
    std::fill(x.ptr<float>(), x.ptr<float>() + x.numel(), kSentinel);
    return x;
  };
  // Batch b's first n rows of a [B, R, H, D] tensor as a [1, n, H, D] one.
  auto rows = [&](const Buffer& x, int b, int n) {
    const TensorView& xv = x.view();
    int64_t per = xv.shape[2] * xv.shape[3];
    Buffer r(DType::f32, {1, n, xv.shape[2], xv.shape[3]});
    std::copy_n(x.ptr<float>() + b * xv.shape[1] * per, n * per, r.ptr<float>());
    return r;
  };
  // Row t of batch b of a [B, R, ...] tensor: w elements starting at (b * R + t) * w.
  auto expect_rows = [&](const Buffer& got, const Buffer& alone, int b, int R, int n, int w,
                         const char* what) {
    for (int t = 0; t < R; t++)
      for (int i = 0; i < w; i++) {
        float g = got.ptr<float>()[(int64_t(b) * R + t) * w + i];
        if (t >= n) {
          ASSERT_EQ(g, kSentinel) << what << " b " << b << " row " << t << " was written";
        } else {
          float a = alone.ptr<float>()[int64_t(t) * w + i];
          if (std::isinf(a)) ASSERT_EQ(g, a) << what << " b " << b << " row " << t;
          else ASSERT_NEAR(g, a, 1e-5 * (1 + std::fabs(a))) << what << " b " << b << " row " << t;
        }
      }
  };
  Seqs ragged{.seqlens_k = lk, .seqlens_q = lq};
  SelectOpts sel{.k = 3};
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    Buffer o = filled({B, T, Hq, D}), lse = filled({B, T, Hq});
    on_backend(OP(attention_forward), q, k, v, ragged, opts(causal), o, lse);
    Buffer dq = filled({B, T, Hq, D}), dk = filled({B, S, Hkv, D}), dv = filled({B, S, Hkv, D});
    on_backend(OP(attention_backward), q, k, v, o, lse, dout, ragged, opts(causal), dq, dk, dv);
    Buffer sc = filled({B, T, Hq, S}), ent = filled({B, T, Hq});
    on_backend(OP(attention_scores), q, k, ragged, opts(causal), sc);
    on_backend(OP(attention_entropy), q, k, ragged, opts(causal), ent, TensorView{});
    Buffer to = filled({B, T, Hq, D}), tl = filled({B, T, Hq});
    Buffer idx(DType::i32, {B, T, Hq, 3});
    std::fill(idx.ptr<int32_t>(), idx.ptr<int32_t>() + idx.numel(), 1234);
    on_backend(OP(topk_attention_forward), q, k, v, ragged, opts(causal), sel, to, tl, idx);
    Buffer sq = filled({B, T, Hq, D}), sk = filled({B, S, Hkv, D}), sv = filled({B, S, Hkv, D});
    on_backend(OP(sparse_attention_backward), q, k, v, idx, to, tl, dout, ragged, opts(causal), sq, sk, sv);
    Buffer mass = filled({B, T, Hq});
    on_backend(OP(selection_mass), q, k, idx, ragged, opts(causal), mass);
    for (int b = 0; b < B; b++) {
      SCOPED_TRACE("sequence " + std::to_string(b));
      int n = lq[b], m = lk[b];
      if (n == 0) {  // no queries: no output row is written, and no key gets a gradient
        Buffer none(DType::f32, {1});
        expect_rows(o, none, b, T, 0, Hq * D, "o");
        expect_rows(dq, none, b, T, 0, Hq * D, "dq");
        expect_rows(sq, none, b, T, 0, Hq * D, "sparse dq");
        for (int64_t i = 0; i < int64_t(S) * Hkv * D; i++) {
          ASSERT_EQ(dk.ptr<float>()[b * S * Hkv * D + i], 0.f);
          ASSERT_EQ(dv.ptr<float>()[b * S * Hkv * D + i], 0.f);
        }
        continue;
      }
      Buffer q1 = rows(q, b, n), k1 = rows(k, b, m), v1 = rows(v, b, m), d1 = rows(dout, b, n);
      Out a = full(q1, k1, v1, {}, causal);
      expect_rows(o, a.o, b, T, n, Hq * D, "o");
      expect_rows(lse, a.lse, b, T, n, Hq, "lse");
      Buffer aq(DType::f32, {1, n, Hq, D}), ak(DType::f32, {1, m, Hkv, D}), av(DType::f32, {1, m, Hkv, D});
      on_backend(OP(attention_backward), q1, k1, v1, a.o, a.lse, d1, Seqs{}, opts(causal), aq, ak, av);
      expect_rows(dq, aq, b, T, n, Hq * D, "dq");
      for (int j = 0; j < S; j++)  // key rows past seqlens_k get 0 (dk, dv are overwritten whole)
        for (int i = 0; i < Hkv * D; i++) {
          int64_t e = (int64_t(b) * S + j) * Hkv * D + i;
          float wk = j < m ? ak.ptr<float>()[j * Hkv * D + i] : 0.f;
          float wv = j < m ? av.ptr<float>()[j * Hkv * D + i] : 0.f;
          ASSERT_NEAR(dk.ptr<float>()[e], wk, 1e-5 * (1 + std::fabs(wk))) << "dk row " << j;
          ASSERT_NEAR(dv.ptr<float>()[e], wv, 1e-5 * (1 + std::fabs(wv))) << "dv row " << j;
        }
      Buffer asc(DType::f32, {1, n, Hq, m}), aent(DType::f32, {1, n, Hq});
      on_backend(OP(attention_scores), q1, k1, Seqs{}, opts(causal), asc);
      on_backend(OP(attention_entropy), q1, k1, Seqs{}, opts(causal), aent, TensorView{});
      for (int t = 0; t < T; t++)
        for (int h = 0; h < Hq; h++)
          for (int j = 0; j < S; j++) {
            float g = sc.ptr<float>()[((int64_t(b) * T + t) * Hq + h) * S + j];
            if (t >= n) ASSERT_EQ(g, kSentinel) << "scores row " << t;
            else if (j >= m) ASSERT_EQ(g, -kInf) << "scores padding " << j;
            else {
              float a = asc.ptr<float>()[(int64_t(t) * Hq + h) * m + j];
              if (std::isinf(a)) ASSERT_EQ(g, a) << "scores row " << t << " key " << j;
              else ASSERT_NEAR(g, a, 1e-5) << "scores row " << t << " key " << j;
            }
          }
      expect_rows(ent, aent, b, T, n, Hq, "entropy");
      Buffer ao(DType::f32, {1, n, Hq, D}), al(DType::f32, {1, n, Hq}), ai(DType::i32, {1, n, Hq, 3});
      on_backend(OP(topk_attention_forward), q1, k1, v1, Seqs{}, opts(causal), sel, ao, al, ai);
      expect_rows(to, ao, b, T, n, Hq * D, "top-k o");
      expect_rows(tl, al, b, T, n, Hq, "top-k lse");
      for (int t = 0; t < T; t++)
        for (int i = 0; i < Hq * 3; i++) {
          int32_t g = idx.ptr<int32_t>()[(int64_t(b) * T + t) * Hq * 3 + i];
          if (t >= n) ASSERT_EQ(g, 1234) << "indices row " << t << " was written";
          else ASSERT_EQ(g, ai.ptr<int32_t>()[int64_t(t) * Hq * 3 + i]) << "indices row " << t;
        }
      Buffer bq(DType::f32, {1, n, Hq, D}), bk(DType::f32, {1, m, Hkv, D}), bv(DType::f32, {1, m, Hkv, D});
      on_backend(OP(sparse_attention_backward), q1, k1, v1, ai, ao, al, d1, Seqs{}, opts(causal), bq, bk, bv);
      expect_rows(sq, bq, b, T, n, Hq * D, "sparse dq");
      for (int j = 0; j < m; j++)
        for (int i = 0; i < Hkv * D; i++) {
          int64_t e = (int64_t(b) * S + j) * Hkv * D + i;
          ASSERT_NEAR(sk.ptr<float>()[e], bk.ptr<float>()[j * Hkv * D + i], 1e-5) << "sparse dk row " << j;
          ASSERT_NEAR(sv.ptr<float>()[e], bv.ptr<float>()[j * Hkv * D + i], 1e-5) << "sparse dv row " << j;
        }
      Buffer am(DType::f32, {1, n, Hq});
      on_backend(OP(selection_mass), q1, k1, ai, Seqs{}, opts(causal), am);
      expect_rows(mass, am, b, T, n, Hq, "mass");
    }
  }
}

TEST_P(Semantics, QueriesThatSeeNoKeyGiveZeroAndInfiniteLse) {
  // Causal with more queries than keys: the first queries sit before key 0.
  int T = 4, S = 2, H = 1, D = kD;
  Buffer q = randn({1, T, H, D}, 13), k = randn({1, S, H, D}, 14), v = randn({1, S, H, D}, 15);
  Out r = full(q, k, v, {}, true);
  for (int t = 0; t < 2; t++) {
    EXPECT_EQ(r.lse.ptr<float>()[t], kInf);
    for (int d = 0; d < D; d++) EXPECT_EQ(r.o.ptr<float>()[t * D + d], 0.0f);
  }
  EXPECT_TRUE(std::isfinite(r.lse.ptr<float>()[2]));
  // A zero-length sequence in a ragged batch, too.
  int32_t lens[1] = {0};
  Out z = full(q, k, v, Seqs{.seqlens_k = lens}, false);
  for (int t = 0; t < T; t++) EXPECT_EQ(z.lse.ptr<float>()[t], kInf);
}

TEST_P(Semantics, SparseSkipsInvalidIndicesAndCountsDuplicates) {
  int S = 12, H = 1, D = kD;
  Buffer q = randn({1, 1, H, D}, 16), k = randn({1, S, H, D}, 17), v = randn({1, S, H, D}, 18);
  auto run = [&](std::vector<int32_t> list) {
    Buffer idx(DType::i32, {1, 1, 1, int64_t(list.size())});
    std::copy(list.begin(), list.end(), idx.ptr<int32_t>());
    Out r{Buffer(DType::f32, {1, 1, H, D}), Buffer(DType::f32, {1, 1, H})};
    on_backend(OP(sparse_attention_forward), q, k, v, idx, Seqs{}, opts(), r.o, r.lse);
    return r;
  };
  Out a = run({3, -1, 7, S + 5, 1, -7}), b = run({3, 7, 1});
  EXPECT_EQ(to_vec(a.o), to_vec(b.o));
  EXPECT_EQ(to_vec(a.lse), to_vec(b.lse));
  Out none = run({-1, S, -1});
  EXPECT_EQ(none.lse.ptr<float>()[0], kInf);
  for (int d = 0; d < D; d++) EXPECT_EQ(none.o.ptr<float>()[d], 0.0f);
  // [2, 2]: the output is v_2 and lse gains ln 2.
  Out one = run({2}), twice = run({2, 2});
  for (int d = 0; d < D; d++) EXPECT_NEAR(twice.o.ptr<float>()[d], v.ptr<float>()[2 * D + d], 1e-6);
  EXPECT_NEAR(twice.lse.ptr<float>()[0], one.lse.ptr<float>()[0] + std::log(2.0), 1e-5);
}

TEST_P(Semantics, TopkWithFullBudgetIsFullAttention) {
  int S = 29, Hq = 4, Hkv = 2, D = kD;
  Buffer q = randn({1, S, Hq, D}, 19), k = randn({1, S, Hkv, D}, 20), v = randn({1, S, Hkv, D}, 21);
  Out f = full(q, k, v, {}, true);
  for (SelectOpts sel : {SelectOpts{.k = S}, SelectOpts{.k = 1000}, SelectOpts{.ratio = 1.0},
                         SelectOpts{.k = S, .share_group = true}}) {
    int hsel = sel.share_group ? Hkv : Hq;
    Buffer o(DType::f32, {1, S, Hq, D}), lse(DType::f32, {1, S, Hq});
    Buffer idx(DType::i32, {1, S, hsel, select_capacity(sel, S)});
    on_backend(OP(topk_attention_forward), q, k, v, Seqs{}, opts(true), sel, o, lse, idx);
    EXPECT_LT(test::max_rel_err(to_vec(o), to_vec(f.o)), 1e-5);
    EXPECT_LT(test::max_rel_err(to_vec(lse), to_vec(f.lse)), 1e-5);
    // Query t selected exactly its t+1 visible keys.
    for (int t = 0; t < S; t++) {
      int valid = 0;
      for (int64_t i = 0; i < idx.view().shape[3]; i++)
        valid += idx.ptr<int32_t>()[(int64_t(t) * hsel) * idx.view().shape[3] + i] >= 0;
      EXPECT_EQ(valid, t + 1);
    }
  }
}

TEST_P(Semantics, GqaEqualsMhaWithRepeatedHeads) {
  int S = 11, Hq = 6, Hkv = 2, D = kD, G = Hq / Hkv;
  Buffer q = randn({1, 2, Hq, D}, 22), k = randn({1, S, Hkv, D}, 23), v = randn({1, S, Hkv, D}, 24);
  Buffer kr(DType::f32, {1, S, Hq, D}), vr(DType::f32, {1, S, Hq, D});
  for (int j = 0; j < S; j++)
    for (int h = 0; h < Hq; h++)
      for (int d = 0; d < D; d++) {
        kr.ptr<float>()[(j * Hq + h) * D + d] = k.ptr<float>()[(j * Hkv + h / G) * D + d];
        vr.ptr<float>()[(j * Hq + h) * D + d] = v.ptr<float>()[(j * Hkv + h / G) * D + d];
      }
  Out a = full(q, k, v, {}, false), b = full(q, kr, vr, {}, false);
  EXPECT_LT(test::max_rel_err(to_vec(a.o), to_vec(b.o)), 1e-6);
}

TEST_P(Semantics, EntropyOfUniformAndSingleKey) {
  int S = 50, H = 2, D = kD;
  Buffer q(DType::f32, {1, 2, H, D});  // q = 0: uniform attention
  Buffer k = randn({1, S, H, D}, 25);
  Buffer e(DType::f32, {1, 2, H}), n(DType::f32, {1, 2, H});
  int32_t pos[1] = {0};  // causal, query 0 sees key 0 only; query 1 sees keys 0..1
  on_backend(OP(attention_entropy), q, k, Seqs{.q_pos = pos}, opts(true), e, n);
  EXPECT_EQ(e.ptr<float>()[0], 0.0f);
  EXPECT_EQ(n.ptr<float>()[0], 0.0f);
  EXPECT_NEAR(e.ptr<float>()[H], std::log(2.0), 1e-6);
  EXPECT_NEAR(n.ptr<float>()[H], 1.0, 1e-6);
  on_backend(OP(attention_entropy), q, k, Seqs{}, opts(false), e, n);
  EXPECT_NEAR(e.ptr<float>()[0], std::log(double(S)), 1e-5);
  EXPECT_NEAR(n.ptr<float>()[0], 1.0, 1e-6);
}

TEST_P(Semantics, SelectionMassCoversProbabilities) {
  int S = 9, H = 1, D = kD;
  Buffer q = randn({1, 1, H, D}, 26), k = randn({1, S, H, D}, 27);
  auto mass = [&](std::vector<int32_t> list) {
    Buffer idx(DType::i32, {1, 1, 1, int64_t(list.size())});
    std::copy(list.begin(), list.end(), idx.ptr<int32_t>());
    Buffer m(DType::f32, {1, 1, H});
    on_backend(OP(selection_mass), q, k, idx, Seqs{}, opts(), m);
    return m.ptr<float>()[0];
  };
  std::vector<int32_t> all(S);
  for (int j = 0; j < S; j++) all[j] = j;
  EXPECT_NEAR(mass(all), 1.0, 1e-6);
  EXPECT_EQ(mass({-1, -1}), 0.0f);
  EXPECT_NEAR(mass({4, 4, 4}), mass({4}), 1e-7);  // duplicates once
  EXPECT_NEAR(mass({1, 4}), mass({1}) + mass({4}), 1e-6);
}

TEST_P(Semantics, DeterministicRuns) {
  int S = 300, Hq = 4, Hkv = 2, D = kD;
  Buffer q = randn({1, 40, Hq, D}, 28), k = randn({1, S, Hkv, D}, 29), v = randn({1, S, Hkv, D}, 30);
  SelectOpts sel{.k = 24};
  std::vector<float> first;
  for (int rep = 0; rep < 2; rep++) {
    Buffer o(DType::f32, {1, 40, Hq, D}), lse(DType::f32, {1, 40, Hq});
    Buffer idx(DType::i32, {1, 40, Hq, 24});
    on_backend(OP(topk_attention_forward), q, k, v, Seqs{}, opts(true), sel, o, lse, idx);
    Buffer dq(DType::f32, {1, 40, Hq, D}), dk(DType::f32, {1, S, Hkv, D}), dv(DType::f32, {1, S, Hkv, D});
    Buffer dout = randn({1, 40, Hq, D}, 31);
    on_backend(OP(sparse_attention_backward), q, k, v, idx, o, lse, dout, Seqs{}, opts(true), dq, dk, dv);
    std::vector<float> all = to_vec(o);
    for (auto* b : {&dq, &dk, &dv}) {
      auto x = to_vec(*b);
      all.insert(all.end(), x.begin(), x.end());
    }
    if (rep == 0) first = all;
    else EXPECT_EQ(first, all);
  }
}

#ifdef TOPK_SEMANTICS_ON_CUDA
INSTANTIATE_TEST_SUITE_P(Backends, Semantics, ::testing::Values(Path{Backend::cuda, cpu::Isa::scalar}),
                         [](const auto&) { return std::string("cuda"); });
#else
INSTANTIATE_TEST_SUITE_P(Backends, Semantics,
                         ::testing::Values(Path{Backend::ref, cpu::Isa::scalar},
                                           Path{Backend::cpu, cpu::Isa::scalar},
                                           Path{Backend::cpu, cpu::Isa::avx2},
                                           Path{Backend::cpu, cpu::Isa::avx512}),
                         [](const auto& info) {
                           std::string name = backend_name(info.param.backend);
                           if (info.param.backend == Backend::cpu)
                             name += std::string("_") + cpu::isa_name(info.param.isa);
                           return name;
                         });

TEST(RetrievalPrecision, CountsOverlapWithExactSet) {
  Buffer exact(DType::i32, {1, 1, 2, 4}), approx(DType::i32, {1, 1, 2, 3}), p(DType::f32, {1, 1, 2});
  int32_t e[] = {0, 1, 2, 3, -1, -1, -1, -1};
  int32_t a[] = {1, 3, 5, 2, 2, 7};
  std::copy(e, e + 8, exact.ptr<int32_t>());
  std::copy(a, a + 6, approx.ptr<int32_t>());
  retrieval_precision(approx, exact, p);
  EXPECT_FLOAT_EQ(p.ptr<float>()[0], 0.5f);
  EXPECT_TRUE(std::isnan(p.ptr<float>()[1]));  // no exact keys: undefined
  int32_t dup[] = {1, 1, 1};  // duplicates count once
  std::copy(dup, dup + 3, approx.ptr<int32_t>());
  retrieval_precision(approx, exact, p);
  EXPECT_FLOAT_EQ(p.ptr<float>()[0], 0.25f);
}

#endif  // TOPK_SEMANTICS_ON_CUDA

}  // namespace
