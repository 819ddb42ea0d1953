// Every model op on CUDA against the CPU op (f32, the reference) on random inputs, in f32 and in
// bf16 where the op takes bf16; sizes around the kernels' block and chunk sizes; in-place forms;
// and the same bits on two runs for every op that reduces. Outputs are poisoned (NaN) first so
// that unwritten elements fail. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "model/ops.h"

using namespace topk;

namespace {

#define NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

std::vector<float> rnd(int64_t n, uint64_t seed, float scale = 1.0f) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = scale * r.normal();
  return v;
}

// Values rounded to bf16 (what a bf16 tensor of them holds).
std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

// A device tensor of `dt` holding v (rounded to dt).
Buffer dev(const std::vector<float>& v, std::initializer_list<int64_t> shape, DType dt) {
  Buffer h(dt, shape), d(dt, shape, Device::cuda);
  for (size_t i = 0; i < v.size(); i++) store_f32(h.ptr<void>(), dt, int64_t(i), v[i]);
  copy(d, h);
  return d;
}
Buffer dev_i32(const std::vector<int32_t>& v) {
  Buffer d(DType::i32, {int64_t(v.size())}, Device::cuda);
  copy(d, make_view(const_cast<int32_t*>(v.data()), DType::i32, {int64_t(v.size())}));
  return d;
}
// A device tensor of `dt` full of NaN.
Buffer poisoned(std::initializer_list<int64_t> shape, DType dt) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return dev(std::vector<float>(size_t(n), std::nanf("")), shape, dt);
}
std::vector<float> host(const TensorView& d) {
  Buffer h(d.dtype, {d.numel()});
  TensorView flat = make_view(d.data, d.dtype, {d.numel()}, Device::cuda);
  copy(h, flat);
  std::vector<float> v(size_t(d.numel()));
  for (int64_t i = 0; i < d.numel(); i++) v[size_t(i)] = load_f32(h.ptr<void>(), d.dtype, i);
  return v;
}
TensorView hv(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return make_view(v.data(), DType::f32, shape);
}

// Every value finite where the reference is, then |got - want| <= atol + rtol |want|.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol,
                  float rtol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; i++) {
    const bool ok = std::isfinite(want[i]) ? std::isfinite(got[i]) &&
                                                 std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i])
                                           : std::isnan(want[i]) == std::isnan(got[i]);
    if (!ok) {
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
      bad++;
    }
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

struct Tol {
  float atol, rtol;
};
Tol tol(DType dt) { return dt == DType::bf16 ? Tol{2e-2f, 2e-2f} : Tol{1e-5f, 1e-5f}; }

}  // namespace

TEST(CudaModelOps, GemmAllTransposesAndBeta) {
  NEED_GPU();
  for (auto [M, N, K] : {std::tuple{1, 1, 1}, {33, 65, 17}, {128, 96, 256}, {257, 31, 129}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (DType cdt : {DType::f32, DType::bf16}) {
          const float beta = cdt == DType::f32 ? 0.5f : 0.0f;
          std::vector<float> a = round_bf16(rnd(int64_t(M) * K, 1)), b = round_bf16(rnd(int64_t(K) * N, 2));
          std::vector<float> c0 = rnd(int64_t(M) * N, 3), want = c0;
          const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
          ops::gemm(hv(want, {M, N}), hv(a, {ar, ac}), ta, hv(b, {br, bc}), tb, 1.5f, beta);
          Buffer da = dev(a, {ar, ac}, DType::bf16), db = dev(b, {br, bc}, DType::bf16),
                 dc = dev(c0, {M, N}, cdt);
          ops::gemm(dc, da, ta, db, tb, 1.5f, beta);
          const float rt = cdt == DType::bf16 ? 1e-2f : 1e-4f;
          expect_close(host(dc), want, 1e-3f * float(K), rt, "gemm");
        }
}

TEST(CudaModelOps, BiasAndItsGradient) {
  NEED_GPU();
  for (int64_t N : {1, 255, 257, 1000})
    for (DType dt : {DType::f32, DType::bf16}) {
      const int64_t C = 77;
      std::vector<float> y = round_bf16(rnd(N * C, 4)), b = round_bf16(rnd(C, 5));
      std::vector<float> want = y;
      ops::add_bias(hv(want, {N, C}), hv(b, {C}));
      Buffer dy = dev(y, {N, C}, dt), dbias = dev(b, {C}, dt);
      ops::add_bias(dy, dbias);
      expect_close(host(dy), want, tol(dt).atol, tol(dt).rtol, "add_bias");
      std::vector<float> g0 = rnd(C, 6), gw = g0;
      ops::bias_grad(hv(gw, {C}), hv(y, {N, C}));
      std::vector<float> runs[2];
      for (auto& r : runs) {
        Buffer dg = dev(g0, {C}, DType::f32), dsrc = dev(y, {N, C}, dt);
        ops::bias_grad(dg, dsrc);
        r = host(dg);
      }
      expect_close(runs[0], gw, 1e-3f, 1e-4f, "bias_grad");
      EXPECT_TRUE(same_bits(runs[0], runs[1])) << "bias_grad differs between runs";
    }
}

TEST(CudaModelOps, EmbeddingForwardAndBackward) {
  NEED_GPU();
  const int64_t V = 50, H = 70, N = 600;
  Rng r(7);
  std::vector<int32_t> tok(static_cast<size_t>(N));
  for (auto& t : tok) t = int32_t(r.below(V / 3));  // many repeats
  std::vector<float> table = round_bf16(rnd(V * H, 8));
  std::vector<float> want(size_t(N * H));
  Buffer tk = dev_i32(tok);
  ops::embedding_forward(hv(want, {N, H}), hv(table, {V, H}),
                         make_view(tok.data(), DType::i32, {N}));
  for (DType dt : {DType::f32, DType::bf16}) {
    Buffer out = poisoned({N, H}, DType::f32), dt_table = dev(table, {V, H}, dt);
    ops::embedding_forward(out, dt_table, tk);
    expect_close(host(out), want, 0, 0, "embedding_forward");
  }
  std::vector<float> g = rnd(N * H, 9), d0 = rnd(V * H, 10), dw = d0;
  ops::embedding_backward(hv(dw, {V, H}), hv(g, {N, H}), tok);
  std::vector<float> runs[2];
  for (auto& out : runs) {
    Buffer dd = dev(d0, {V, H}, DType::f32), dg = dev(g, {N, H}, DType::f32);
    ops::embedding_backward(dd, dg, tok);
    out = host(dd);
  }
  expect_close(runs[0], dw, 1e-4f, 1e-5f, "embedding_backward");
  EXPECT_TRUE(same_bits(runs[0], runs[1]));
}

TEST(CudaModelOps, RmsNormForwardBackward) {
  NEED_GPU();
  for (auto [N, H] : {std::pair{1, 64}, {33, 768}, {300, 128}, {7, 1000}})
    for (DType dt : {DType::f32, DType::bf16}) {
      std::vector<float> x = round_bf16(rnd(int64_t(N) * H, 11)), w = rnd(H, 12, 0.5f);
      for (float& v : w) v += 1.0f;
      w = round_bf16(w);  // the weights a bf16 tensor holds
      std::vector<float> y(size_t(N * H)), rstd(static_cast<size_t>(N));
      ops::rmsnorm_forward(hv(y, {N, H}), hv(rstd, {N}), hv(x, {N, H}), hv(w, {H}), 1e-5f);
      Buffer dx = dev(x, {N, H}, dt), dw = dev(w, {H}, dt), dy = poisoned({N, H}, dt),
             dr = poisoned({N}, DType::f32);
      ops::rmsnorm_forward(dy, dr, dx, dw, 1e-5f);
      expect_close(host(dy), y, tol(dt).atol, tol(dt).rtol, "rmsnorm_forward");
      expect_close(host(dr), rstd, 1e-5f, 1e-4f, "rstd");
      // In place (y = x).
      ops::rmsnorm_forward(dx, TensorView{}, dx, dw, 1e-5f);
      expect_close(host(dx), y, tol(dt).atol, tol(dt).rtol, "rmsnorm in place");
      // Backward, accumulating into dx and dw.
      std::vector<float> g = round_bf16(rnd(int64_t(N) * H, 13)), gx0 = rnd(int64_t(N) * H, 14),
                         gw0 = rnd(H, 15), gx = gx0, gw = gw0;
      ops::rmsnorm_backward(hv(gx, {N, H}), true, hv(gw, {H}), hv(g, {N, H}), hv(x, {N, H}),
                            hv(w, {H}), hv(rstd, {N}));
      std::vector<float> runs[2][2];
      for (auto& r : runs) {
        Buffer ddx = dev(gx0, {N, H}, DType::f32), ddw = dev(gw0, {H}, DType::f32),
               dg = dev(g, {N, H}, dt), xx = dev(x, {N, H}, dt), ww = dev(w, {H}, dt),
               rr = dev(rstd, {N}, DType::f32);
        ops::rmsnorm_backward(ddx, true, ddw, dg, xx, ww, rr);
        r[0] = host(ddx);
        r[1] = host(ddw);
      }
      expect_close(runs[0][0], gx, 1e-3f, 1e-3f, "rmsnorm dx");
      expect_close(runs[0][1], gw, 1e-2f, 1e-3f, "rmsnorm dw");
      EXPECT_TRUE(same_bits(runs[0][1], runs[1][1])) << "rmsnorm dw differs between runs";
    }
}

TEST(CudaModelOps, RopeForwardAndInverse) {
  NEED_GPU();
  const int64_t N = 129, Hh = 3, D = 64;
  std::vector<int32_t> pos(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) pos[size_t(n)] = int32_t(n * 997 % 131072);
  std::vector<float> f(size_t(D / 2));
  for (int64_t i = 0; i < D / 2; i++) f[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / float(D));
  for (DType dt : {DType::f32, DType::bf16}) {
    std::vector<float> x = round_bf16(rnd(N * Hh * D, 16)), want = x;
    ops::rope(hv(want, {N, Hh, D}), make_view(pos.data(), DType::i32, {N}), hv(f, {D / 2}), false);
    Buffer dx = dev(x, {N, Hh, D}, dt), dp = dev_i32(pos), df = dev(f, {D / 2}, DType::f32);
    ops::rope(dx, dp, df, false);
    // Angles up to 1e5 rad: f32 products agree, the sines differ by a few ulp of the angle.
    expect_close(host(dx), want, dt == DType::bf16 ? 3e-2f : 2e-4f, tol(dt).rtol, "rope");
    ops::rope(dx, dp, df, true);
    expect_close(host(dx), x, dt == DType::bf16 ? 5e-2f : 2e-4f, tol(dt).rtol, "rope inverse");
  }
}

TEST(CudaModelOps, SwigluForwardBackward) {
  NEED_GPU();
  for (auto [N, I] : {std::pair{1, 1}, {17, 300}, {256, 2048}})
    for (DType dt : {DType::f32, DType::bf16}) {
      std::vector<float> gu = round_bf16(rnd(int64_t(N) * 2 * I, 17, 2.0f)), act(size_t(N * I));
      ops::swiglu_forward(hv(act, {N, I}), hv(gu, {N, 2 * I}));
      Buffer dgu = dev(gu, {N, 2 * I}, dt), dact = poisoned({N, I}, dt);
      ops::swiglu_forward(dact, dgu);
      expect_close(host(dact), act, tol(dt).atol, tol(dt).rtol, "swiglu");
      std::vector<float> da = round_bf16(rnd(int64_t(N) * I, 18)), dg(size_t(N * 2 * I));
      ops::swiglu_backward(hv(dg, {N, 2 * I}), hv(da, {N, I}), hv(gu, {N, 2 * I}));
      Buffer ddg = poisoned({N, 2 * I}, dt), dda = dev(da, {N, I}, dt);
      ops::swiglu_backward(ddg, dda, dgu);
      expect_close(host(ddg), dg, tol(dt).atol, tol(dt).rtol, "swiglu backward");
    }
}

TEST(CudaModelOps, CrossEntropyMaskedAndInPlace) {
  NEED_GPU();
  const int64_t N = 37, V = 32000;
  Rng r(19);
  std::vector<int32_t> tg(static_cast<size_t>(N));
  std::vector<float> wt(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) {
    tg[size_t(n)] = n % 7 == 3 ? -1 : int32_t(r.below(V));
    wt[size_t(n)] = n % 5 == 1 ? 0.0f : 1.0f;
  }
  for (DType dt : {DType::f32, DType::bf16}) {
    std::vector<float> lg = round_bf16(rnd(N * V, 20, 3.0f)), loss(static_cast<size_t>(N)), d(size_t(N * V));
    ops::cross_entropy(hv(loss, {N}), hv(d, {N, V}), hv(lg, {N, V}),
                       make_view(tg.data(), DType::i32, {N}), hv(wt, {N}), 0.25f);
    Buffer dl = dev(lg, {N, V}, dt), dloss = poisoned({N}, DType::f32), dd = poisoned({N, V}, dt),
           dtg = dev_i32(tg), dwt = dev(wt, {N}, DType::f32);
    ops::cross_entropy(dloss, dd, dl, dtg, dwt, 0.25f);
    expect_close(host(dloss), loss, 1e-3f, 1e-4f, "cross_entropy loss");
    expect_close(host(dd), d, dt == DType::bf16 ? 1e-4f : 1e-7f, tol(dt).rtol, "cross_entropy grad");
    ops::cross_entropy(dloss, dl, dl, dtg, dwt, 0.25f);  // in place
    expect_close(host(dl), d, dt == DType::bf16 ? 1e-4f : 1e-7f, tol(dt).rtol, "in place");
  }
}

TEST(CudaModelOps, ElementwiseReductionsAndRows) {
  NEED_GPU();
  const int64_t n = 300001;
  std::vector<float> a = round_bf16(rnd(n, 21)), b = round_bf16(rnd(n, 22)), y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) y[size_t(i)] = a[size_t(i)] + b[size_t(i)];
  Buffer da = dev(a, {n}, DType::bf16), db = dev(b, {n}, DType::f32), dy = poisoned({n}, DType::f32);
  ops::add(dy, da, db);
  expect_close(host(dy), y, 1e-6f, 1e-6f, "add");
  ops::scale(dy, 0.5f);
  for (float& v : y) v *= 0.5f;
  expect_close(host(dy), y, 1e-6f, 1e-6f, "scale");
  Buffer c16 = poisoned({n}, DType::bf16);
  ops::convert(c16, dy);
  expect_close(host(c16), round_bf16(y), 0, 0, "convert to bf16");
  double want = 0;
  for (float v : y) want += double(v) * v;
  const double s1 = ops::sum_squares(dy), s2 = ops::sum_squares(dy);
  EXPECT_NEAR(s1, want, 1e-5 * want);
  EXPECT_EQ(s1, s2);
  EXPECT_TRUE(ops::all_finite(dy));
  std::vector<float> inf = y;
  inf[123456] = INFINITY;
  EXPECT_FALSE(ops::all_finite(dev(inf, {n}, DType::f32)));
  ops::zero(dy);
  EXPECT_EQ(ops::sum_squares(dy), 0.0);
  // Rows of 5 bf16 values (not a multiple of 4 bytes) and of 8.
  for (int64_t C : {5, 8}) {
    const int64_t R = 20, N = 6;
    std::vector<float> src = round_bf16(rnd(N * C, 23)), dst = rnd(R * C, 24);
    std::vector<int32_t> idx = {3, -1, 0, 19, 7, 8};
    std::vector<float> want_s = round_bf16(dst);
    for (int64_t i = 0; i < N; i++)
      if (idx[size_t(i)] >= 0)
        for (int64_t c = 0; c < C; c++) want_s[size_t(idx[size_t(i)] * C + c)] = src[size_t(i * C + c)];
    Buffer ddst = dev(dst, {R, C}, DType::bf16), dsrc = dev(src, {N, C}, DType::bf16),
           didx = dev_i32(idx);
    ops::scatter_rows(ddst, didx, dsrc);
    expect_close(host(ddst), want_s, 0, 0, "scatter_rows");
    std::vector<int32_t> gi = {19, 0, 3, 3};
    std::vector<float> want_g;
    for (int32_t r : gi)
      for (int64_t c = 0; c < C; c++) want_g.push_back(want_s[size_t(r * C + c)]);
    Buffer out = poisoned({4, C}, DType::bf16), dgi = dev_i32(gi);
    ops::gather_rows(out, ddst, dgi);
    expect_close(host(out), want_g, 0, 0, "gather_rows");
  }
}

TEST(CudaModelOps, AdamWMatchesCpuAndWritesTheBf16Copy) {
  NEED_GPU();
  const int64_t n = 70001;
  std::vector<float> w = rnd(n, 25), g = rnd(n, 26), m = rnd(n, 27, 0.1f), v = rnd(n, 28, 0.1f);
  for (float& x : v) x = std::abs(x);
  ops::AdamWStep s;
  s.lr = 1e-3f, s.weight_decay = 0.1f, s.t = 7;
  std::vector<float> hw = w, hm = m, hv2 = v;
  ops::adamw(hv(hw, {n}), hv(g, {n}), hv(hm, {n}), hv(hv2, {n}), TensorView{}, s);
  Buffer dw = dev(w, {n}, DType::f32), dg = dev(g, {n}, DType::f32), dm = dev(m, {n}, DType::f32),
         dvv = dev(v, {n}, DType::f32), low = poisoned({n}, DType::bf16);
  ops::adamw(dw, dg, dm, dvv, low, s);
  expect_close(host(dw), hw, 1e-6f, 1e-5f, "adamw w");
  expect_close(host(dm), hm, 1e-7f, 1e-5f, "adamw m");
  expect_close(host(dvv), hv2, 1e-7f, 1e-5f, "adamw v");
  expect_close(host(low), round_bf16(host(dw)), 0, 0, "adamw bf16 copy");
}
