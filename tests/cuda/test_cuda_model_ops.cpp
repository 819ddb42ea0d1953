// Every CUDA model op (model/ops.h) against a double-precision host reference written here, on
// random inputs from fixed seeds (never zeros), in f32 and bf16, at sizes around the kernels'
// block and group sizes (1, 31, 32, 33, 255, 257 rows and columns; V = 32000). Outputs that an op
// overwrites are poisoned (NaN) first, so unwritten elements fail; NaN and inf positions must
// match before tolerances apply; every reducing op runs twice and must give the same bits.
// Tolerances: f32 outputs 1e-5 relative, bf16 outputs 1e-2, relative to the sum of the absolute
// terms where a result is a sum that may cancel. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "model/ops.h"

using namespace topk;

namespace {

#define NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

using Vec = std::vector<float>;
using DVec = std::vector<double>;
constexpr DType f32 = DType::f32, bf16 = DType::bf16, i32 = DType::i32;

double rtol(DType dt) { return dt == bf16 ? 1e-2 : 1e-5; }

// Normal values times scale, never exactly zero.
Vec rnd(int64_t n, uint64_t seed, float scale = 1.0f) {
  Rng r(seed);
  Vec v(static_cast<size_t>(n));
  for (float& x : v) {
    do x = scale * r.normal();
    while (x == 0);
  }
  return v;
}

// The values a tensor of dtype dt holds for v.
Vec rounded(Vec v, DType dt) {
  if (dt == bf16)
    for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

TensorView flat(const TensorView& t) { return make_view(t.data, t.dtype, {t.numel()}, t.device); }

// A device tensor of dtype dt holding v (rounded to dt).
Buffer up(const Vec& v, std::initializer_list<int64_t> shape, DType dt) {
  Buffer h(dt, shape), d(dt, shape, Device::cuda);
  for (size_t i = 0; i < v.size(); i++) store_f32(h.ptr<void>(), dt, int64_t(i), v[i]);
  copy(d, h);
  return d;
}
Buffer up_i32(const std::vector<int32_t>& v) {
  Buffer d(i32, {int64_t(v.size())}, Device::cuda);
  copy(d, make_view(const_cast<int32_t*>(v.data()), i32, {int64_t(v.size())}));
  return d;
}

// Fills a device tensor with NaN.
void poison(const TensorView& d) {
  Buffer h(d.dtype, {d.numel()});
  for (int64_t i = 0; i < d.numel(); i++) store_f32(h.ptr<void>(), d.dtype, i, std::nanf(""));
  copy(flat(d), h);
}

Vec down(const TensorView& d) {
  Buffer h(d.dtype, {d.numel()});
  copy(h, flat(d));
  Vec v(static_cast<size_t>(d.numel()));
  for (int64_t i = 0; i < d.numel(); i++) v[size_t(i)] = load_f32(h.ptr<void>(), d.dtype, i);
  return v;
}
std::vector<uint8_t> raw(const TensorView& d) {
  Buffer h(d.dtype, {d.numel()});
  copy(h, flat(d));
  std::vector<uint8_t> b(h.bytes());
  std::memcpy(b.data(), h.ptr<void>(), b.size());
  return b;
}

// NaN and inf positions (and signs) first; then |got - want| <= atol + rtol * scale, scale being
// mag[i] when given (the sum of absolute terms) or |want[i]|.
void expect_close(const Vec& got, const DVec& want, double rt, double at, const std::string& what,
                  const DVec* mag = nullptr) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const double g = got[i], w = want[i];
    const bool same = std::isnan(g) ? std::isnan(w) : std::isinf(g) ? g == w : std::isfinite(w);
    if (!same && bad++ < 8) ADD_FAILURE() << what << "[" << i << "]: got " << g << ", want " << w;
  }
  ASSERT_EQ(bad, 0) << what << ": " << bad << " NaN/inf positions differ";
  for (size_t i = 0; i < got.size(); i++) {
    const double g = got[i], w = want[i];
    if (!std::isfinite(w)) continue;
    const double s = mag ? (*mag)[i] : std::fabs(w);
    if (std::fabs(g - w) > at + rt * s && bad++ < 8)
      ADD_FAILURE() << what << "[" << i << "]: got " << g << ", want " << w << " (scale " << s
                    << ")";
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ";
}

std::string name(const char* op, int64_t a, int64_t b, DType dt) {
  return std::string(op) + " " + std::to_string(a) + "x" + std::to_string(b) + " " + dtype_name(dt);
}

const std::vector<std::pair<int64_t, int64_t>> kSizes = {
    {1, 1}, {31, 33}, {32, 32}, {33, 31}, {255, 257}, {257, 255}, {3, 8}, {17, 768}};

}  // namespace

TEST(CudaModelOps, GemmTransposesAlphaBetaAndBf16C) {
  NEED_GPU();
  struct S {
    int64_t M, N, K;
  };
  for (S s :
       {S{1, 1, 1}, {31, 33, 32}, {32, 31, 33}, {33, 257, 255}, {257, 32, 31}, {64, 255, 257}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (DType cdt : {f32, bf16}) {
          const int64_t M = s.M, N = s.N, K = s.K;
          const float alpha = cdt == f32 ? 1.5f : -0.75f, beta = cdt == f32 ? -0.5f : 0.0f;
          const Vec a = rounded(rnd(M * K, 1), bf16), b = rounded(rnd(K * N, 2), bf16);
          const Vec c0 = rounded(rnd(M * N, 3), cdt);
          auto A = [&](int64_t m, int64_t k) {
            return double(ta ? a[size_t(k * M + m)] : a[size_t(m * K + k)]);
          };
          auto B = [&](int64_t k, int64_t n) {
            return double(tb ? b[size_t(n * K + k)] : b[size_t(k * N + n)]);
          };
          DVec want(static_cast<size_t>(M * N)), mag(static_cast<size_t>(M * N));
          for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
              double acc = 0, am = 0;
              for (int64_t k = 0; k < K; k++)
                acc += A(m, k) * B(k, n), am += std::fabs(A(m, k) * B(k, n));
              const double c = beta * double(c0[size_t(m * N + n)]);
              want[size_t(m * N + n)] = alpha * acc + c;
              mag[size_t(m * N + n)] = std::fabs(alpha) * am + std::fabs(c);
            }
          Buffer da = ta ? up(a, {K, M}, bf16) : up(a, {M, K}, bf16);
          Buffer db = tb ? up(b, {N, K}, bf16) : up(b, {K, N}, bf16);
          std::vector<uint8_t> runs[2];
          for (auto& r : runs) {
            Buffer dc = up(c0, {M, N}, cdt);
            if (beta == 0) poison(dc);
            ops::gemm(dc, da, ta, db, tb, alpha, beta);
            r = raw(dc);
            if (&r == &runs[0])
              expect_close(down(dc), want, rtol(cdt), 1e-6,
                           name("gemm", M, N, cdt) + (ta ? " A^T" : "") + (tb ? " B^T" : ""), &mag);
          }
          EXPECT_TRUE(runs[0] == runs[1]) << "gemm differs between runs";
        }
}

TEST(CudaModelOps, GemmWithEmptyInnerDimension) {
  NEED_GPU();
  Buffer a(bf16, {5, 0}, Device::cuda), b(bf16, {0, 7}, Device::cuda);
  const Vec c0 = rnd(35, 4);
  Buffer c = up(c0, {5, 7}, f32);
  ops::gemm(c, a, false, b, false, 1.0f, 0.5f);
  DVec want(c0.begin(), c0.end());
  for (double& w : want) w *= 0.5;
  expect_close(down(c), want, 1e-7, 0, "gemm K = 0, beta 0.5");
  Buffer c16 = up(c0, {5, 7}, bf16);
  poison(c16);
  ops::gemm(c16, a, false, b, false, 1.0f, 0.0f);
  expect_close(down(c16), DVec(35, 0.0), 0, 0, "gemm K = 0, bf16 C");
}

TEST(CudaModelOps, AddBias) {
  NEED_GPU();
  for (auto [N, C] : kSizes)
    for (DType ydt : {f32, bf16})
      for (DType bdt : {f32, bf16}) {
        const Vec y = rounded(rnd(N * C, 5), ydt), b = rounded(rnd(C, 6), bdt);
        DVec want(y.size());
        for (int64_t i = 0; i < N * C; i++)
          want[size_t(i)] = double(y[size_t(i)]) + b[size_t(i % C)];
        Buffer dy = up(y, {N, C}, ydt), dbias = up(b, {C}, bdt);
        ops::add_bias(dy, dbias);
        expect_close(down(dy), want, rtol(ydt), 1e-6, name("add_bias", N, C, ydt));
      }
}

TEST(CudaModelOps, BiasGradIsSummedInAFixedOrder) {
  NEED_GPU();
  auto sizes = kSizes;
  sizes.push_back({1000, 96});
  sizes.push_back({4099, 40});
  for (auto [N, C] : sizes)
    for (DType dt : {f32, bf16}) {
      const Vec g = rounded(rnd(N * C, 7), dt), db0 = rnd(C, 8);
      DVec want(db0.begin(), db0.end()), mag(static_cast<size_t>(C));
      for (int64_t c = 0; c < C; c++) mag[size_t(c)] = std::fabs(db0[size_t(c)]);
      for (int64_t i = 0; i < N * C; i++)
        want[size_t(i % C)] += g[size_t(i)], mag[size_t(i % C)] += std::fabs(g[size_t(i)]);
      Buffer dg = up(g, {N, C}, dt);
      std::vector<uint8_t> runs[2];
      for (auto& r : runs) {
        Buffer db = up(db0, {C}, f32);
        ops::bias_grad(db, dg);
        r = raw(db);
        if (&r == &runs[0])
          expect_close(down(db), want, 1e-5, 1e-6, name("bias_grad", N, C, dt), &mag);
      }
      EXPECT_TRUE(runs[0] == runs[1]) << "bias_grad differs between runs";
    }
}

TEST(CudaModelOps, EmbeddingForward) {
  NEED_GPU();
  const int64_t V = 50;
  for (int64_t H : {1, 31, 32, 33, 257, 768})
    for (int64_t N : {1, 33, 257})
      for (DType dt : {f32, bf16}) {
        Rng r(9);
        std::vector<int32_t> tok(static_cast<size_t>(N));
        for (auto& t : tok) t = int32_t(r.below(V));
        tok[0] = int32_t(V - 1);
        const Vec table = rounded(rnd(V * H, 10), dt);
        DVec want(static_cast<size_t>(N * H));
        for (int64_t n = 0; n < N; n++)
          for (int64_t c = 0; c < H; c++)
            want[size_t(n * H + c)] = table[size_t(tok[size_t(n)] * H + c)];
        Buffer out(f32, {N, H}, Device::cuda), dtab = up(table, {V, H}, dt), dtok = up_i32(tok);
        poison(out);
        ops::embedding_forward(out, dtab, dtok);
        expect_close(down(out), want, 0, 0, name("embedding_forward", N, H, dt));
      }
}

TEST(CudaModelOps, EmbeddingBackwardSumsEachTokensRowsInOrder) {
  NEED_GPU();
  const int64_t V = 50;
  for (int64_t H : {1, 31, 32, 33, 257, 768})
    for (int64_t N : {1, 33, 257, 1003}) {
      Rng r(11);
      std::vector<int32_t> tok(static_cast<size_t>(N));
      for (auto& t : tok) t = int32_t(r.below(V / 3));            // many repeats
      for (int64_t n = N / 3; n < N; n += 2) tok[size_t(n)] = 7;  // one frequent token
      const Vec g = rnd(N * H, 12), d0 = rnd(V * H, 13);
      DVec want(d0.begin(), d0.end()), mag(want.size());
      for (size_t i = 0; i < mag.size(); i++) mag[i] = std::fabs(want[i]);
      for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < H; c++) {
          want[size_t(tok[size_t(n)] * H + c)] += g[size_t(n * H + c)];
          mag[size_t(tok[size_t(n)] * H + c)] += std::fabs(g[size_t(n * H + c)]);
        }
      Buffer dg = up(g, {N, H}, f32);
      std::vector<uint8_t> runs[2];
      for (auto& out : runs) {
        Buffer dt = up(d0, {V, H}, f32);
        ops::embedding_backward(dt, dg, tok);
        out = raw(dt);
        if (&out == &runs[0])
          expect_close(down(dt), want, 1e-5, 1e-6, name("embedding_backward", N, H, f32), &mag);
      }
      EXPECT_TRUE(runs[0] == runs[1]) << "embedding_backward differs between runs";
    }
}

namespace {
struct RmsTypes {
  DType x, w, y;
};
const RmsTypes kRmsTypes[] = {
    {f32, f32, f32}, {bf16, bf16, bf16}, {bf16, f32, f32}, {f32, bf16, bf16}};
const std::vector<std::pair<int64_t, int64_t>> kRmsSizes = {
    {1, 1}, {1, 64}, {31, 33}, {32, 32}, {33, 31}, {255, 257}, {257, 255}, {17, 768}, {5, 4096}};
Vec rms_weight(int64_t H, DType dt) {
  Vec w = rnd(H, 14, 0.3f);
  for (float& x : w) x += 1.0f;
  return rounded(w, dt);
}
// rstd of each row of x [N, H], in double.
DVec rms_rstd(const Vec& x, int64_t N, int64_t H, double eps) {
  DVec r(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; n++) {
    double ss = 0;
    for (int64_t c = 0; c < H; c++) ss += double(x[size_t(n * H + c)]) * x[size_t(n * H + c)];
    r[size_t(n)] = 1.0 / std::sqrt(ss / double(H) + eps);
  }
  return r;
}
}  // namespace

TEST(CudaModelOps, RmsNormForwardInPlaceAndWithoutRstd) {
  NEED_GPU();
  const float eps = 1e-5f;
  for (auto [N, H] : kRmsSizes)
    for (RmsTypes t : kRmsTypes) {
      const Vec x = rounded(rnd(N * H, 15), t.x), w = rms_weight(H, t.w);
      const DVec rs = rms_rstd(x, N, H, eps);
      DVec want(x.size());
      for (int64_t i = 0; i < N * H; i++)
        want[size_t(i)] = double(x[size_t(i)]) * rs[size_t(i / H)] * w[size_t(i % H)];
      const std::string what =
          name("rmsnorm_forward", N, H, t.x) + " w " + dtype_name(t.w) + " y " + dtype_name(t.y);
      Buffer dx = up(x, {N, H}, t.x), dw = up(w, {H}, t.w), dy(t.y, {N, H}, Device::cuda),
             dr(f32, {N}, Device::cuda);
      std::vector<uint8_t> runs[2][2];
      for (auto& r : runs) {
        poison(dy);
        poison(dr);
        ops::rmsnorm_forward(dy, dr, dx, dw, eps);
        r[0] = raw(dy);
        r[1] = raw(dr);
      }
      expect_close(down(dy), want, rtol(t.y), 1e-6, what);
      expect_close(down(dr), rs, 1e-5, 0, what + " rstd");
      EXPECT_TRUE(runs[0][0] == runs[1][0] && runs[0][1] == runs[1][1])
          << what << ": differs between runs";
      poison(dy);
      ops::rmsnorm_forward(dy, TensorView{}, dx, dw, eps);
      expect_close(down(dy), want, rtol(t.y), 1e-6, what + " without rstd");
      if (t.x == t.y) {
        ops::rmsnorm_forward(dx, dr, dx, dw, eps);  // y = x
        expect_close(down(dx), want, rtol(t.y), 1e-6, what + " in place");
      }
    }
}

TEST(CudaModelOps, RmsNormBackward) {
  NEED_GPU();
  struct T {
    DType dy, x, w;
  };
  for (auto [N, H] : kRmsSizes)
    for (T t : {T{f32, f32, f32}, T{bf16, bf16, bf16}, T{bf16, bf16, f32}})
      for (int mode = 0; mode < 3;
           mode++) {  // 0: overwrite dx, with dw; 1: accumulate both; 2: no dw
        const bool acc = mode == 1, with_dw = mode != 2;
        const Vec x = rounded(rnd(N * H, 16), t.x), w = rms_weight(H, t.w),
                  g = rounded(rnd(N * H, 17), t.dy);
        const DVec rs64 = rms_rstd(x, N, H, 1e-5);
        Vec rs(rs64.begin(), rs64.end());  // the f32 rstd the forward stored
        const Vec dx0 = rnd(N * H, 18), dw0 = rnd(H, 19);
        DVec want_dx(x.size()), mag_dx(x.size()), want_dw(static_cast<size_t>(H), 0.0),
            mag_dw(static_cast<size_t>(H), 0.0);
        for (int64_t c = 0; c < H; c++)
          want_dw[size_t(c)] = dw0[size_t(c)], mag_dw[size_t(c)] = std::fabs(dw0[size_t(c)]);
        for (int64_t n = 0; n < N; n++) {
          const double r = rs[size_t(n)];
          double dot = 0, adot = 0;
          for (int64_t c = 0; c < H; c++) {
            const double v = double(g[size_t(n * H + c)]) * w[size_t(c)] * x[size_t(n * H + c)];
            dot += v, adot += std::fabs(v);
          }
          for (int64_t c = 0; c < H; c++) {
            const size_t i = size_t(n * H + c);
            const double a = r * g[i] * w[size_t(c)], b = dot * r * r * r / double(H) * x[i];
            want_dx[i] = (acc ? double(dx0[i]) : 0.0) + a - b;
            mag_dx[i] = (acc ? std::fabs(dx0[i]) : 0.0) + std::fabs(a) +
                        adot * r * r * r / double(H) * std::fabs(x[i]);
            want_dw[size_t(c)] += double(g[i]) * x[i] * r;
            mag_dw[size_t(c)] += std::fabs(double(g[i]) * x[i] * r);
          }
        }
        const std::string what =
            name("rmsnorm_backward", N, H, t.dy) + " mode " + std::to_string(mode);
        Buffer dx = up(dx0, {N, H}, f32), dwt = up(dw0, {H}, f32), dg = up(g, {N, H}, t.dy),
               xx = up(x, {N, H}, t.x), ww = up(w, {H}, t.w), rr = up(rs, {N}, f32);
        std::vector<uint8_t> runs[2][2];
        for (auto& r : runs) {
          copy(dx, up(dx0, {N, H}, f32));
          copy(dwt, up(dw0, {H}, f32));
          if (!acc) poison(dx);
          ops::rmsnorm_backward(dx, acc, with_dw ? dwt.view() : TensorView{}, dg, xx, ww, rr);
          r[0] = raw(dx);
          r[1] = raw(dwt);
        }
        expect_close(down(dx), want_dx, 1e-5, 1e-6, what + " dx", &mag_dx);
        if (with_dw)
          expect_close(down(dwt), want_dw, 1e-5, 1e-6, what + " dw", &mag_dw);
        else
          expect_close(down(dwt), DVec(dw0.begin(), dw0.end()), 0, 0, what + " dw untouched");
        EXPECT_TRUE(runs[0][0] == runs[1][0] && runs[0][1] == runs[1][1])
            << what << ": differs between runs";
      }
}

TEST(CudaModelOps, RopeForwardInverseAndRoundTrip) {
  NEED_GPU();
  struct S {
    int64_t N, Hh, D;
  };
  for (S s : {S{1, 1, 2}, {31, 3, 6}, {33, 2, 16}, {257, 1, 64}, {32, 4, 128}, {5, 2, 34}})
    for (DType dt : {f32, bf16}) {
      const int64_t N = s.N, Hh = s.Hh, D = s.D, half = D / 2;
      Rng r(20);
      std::vector<int32_t> pos(static_cast<size_t>(N));
      for (auto& p : pos) p = int32_t(r.below(131072));
      pos[0] = 0;
      Vec f(static_cast<size_t>(half));
      for (int64_t i = 0; i < half; i++)
        f[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / float(D));
      const Vec x = rounded(rnd(N * Hh * D, 21), dt);
      Buffer dp = up_i32(pos), df = up(f, {half}, f32);
      for (bool inverse : {false, true}) {
        DVec want(x.size()), mag(x.size());
        for (int64_t n = 0; n < N; n++)
          for (int64_t i = 0; i < half; i++) {
            const double a = double(float(pos[size_t(n)]) * f[size_t(i)]);  // the f32 angle
            const double c = std::cos(a), sn = inverse ? -std::sin(a) : std::sin(a);
            for (int64_t h = 0; h < Hh; h++) {
              const size_t j = size_t((n * Hh + h) * D + i), k = j + size_t(half);
              want[j] = x[j] * c - x[k] * sn;
              want[k] = x[k] * c + x[j] * sn;
              mag[j] = mag[k] = std::fabs(x[j]) + std::fabs(x[k]);
            }
          }
        Buffer dx = up(x, {N, Hh, D}, dt);
        ops::rope(dx, dp, df, inverse);
        expect_close(down(dx), want, rtol(dt), 1e-6,
                     name(inverse ? "rope inverse" : "rope", N, D, dt), &mag);
      }
      Buffer dx = up(x, {N, Hh, D}, dt);
      ops::rope(dx, dp, df, false);
      ops::rope(dx, dp, df, true);
      DVec mag(x.size());  // a pair's error scales with both of its values
      for (int64_t row = 0; row < N * Hh; row++)
        for (int64_t i = 0; i < half; i++) {
          const size_t j = size_t(row * D + i), k = j + size_t(half);
          mag[j] = mag[k] = std::fabs(x[j]) + std::fabs(x[k]);
        }
      expect_close(down(dx), DVec(x.begin(), x.end()), dt == bf16 ? 2e-2 : 1e-5, 1e-6,
                   name("rope round trip", N, D, dt), &mag);
    }
}

TEST(CudaModelOps, SwigluForwardBackward) {
  NEED_GPU();
  struct T {
    DType in, out;
  };
  for (auto [N, I] : kSizes)
    for (T t : {T{f32, f32}, T{bf16, bf16}, T{bf16, f32}, T{f32, bf16}}) {
      const Vec gu = rounded(rnd(N * 2 * I, 22, 2.0f), t.in), da = rounded(rnd(N * I, 23), t.out);
      DVec act(static_cast<size_t>(N * I)), dgu(static_cast<size_t>(N * 2 * I)), mag(dgu.size());
      for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < I; c++) {
          const size_t gi = size_t(n * 2 * I + c), ui = gi + size_t(I), ai = size_t(n * I + c);
          const double g = gu[gi], u = gu[ui], d = da[ai], s = 1.0 / (1.0 + std::exp(-g));
          act[ai] = g * s * u;
          dgu[gi] = d * u * s * (1.0 + g * (1.0 - s));
          mag[gi] = std::fabs(d * u * s) * (1.0 + std::fabs(g) * (1.0 - s));
          dgu[ui] = d * g * s;
          mag[ui] = std::fabs(dgu[ui]);
        }
      const std::string what = name("swiglu", N, I, t.in) + " out " + dtype_name(t.out);
      Buffer dgu_in = up(gu, {N, 2 * I}, t.in), dact(t.out, {N, I}, Device::cuda);
      poison(dact);
      ops::swiglu_forward(dact, dgu_in);
      expect_close(down(dact), act, rtol(t.out), 1e-6, what);
      Buffer dd = up(da, {N, I}, t.out), dg(t.out, {N, 2 * I}, Device::cuda);
      poison(dg);
      ops::swiglu_backward(dg, dd, dgu_in);
      expect_close(down(dg), dgu, rtol(t.out), 1e-6, what + " backward", &mag);
    }
}

TEST(CudaModelOps, CrossEntropyMaskedInPlaceAndDeterministic) {
  NEED_GPU();
  struct S {
    int64_t N, V;
  };
  for (S s : {S{37, 32000}, {33, 257}, {5, 31}, {3, 151936}, {2, 1}})
    for (DType dt : {f32, bf16}) {
      const int64_t N = s.N, V = s.V;
      const float gs = 0.25f;
      Vec lg = rnd(N * V, 24, 3.0f);
      if (N > 2)
        lg[size_t(1 * V + V - 1)] = 80.0f, lg[size_t(2 * V)] = -80.0f;  // late max, early min
      lg = rounded(lg, dt);
      Rng r(25);
      std::vector<int32_t> tg(static_cast<size_t>(N));
      Vec wt(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; n++) {
        tg[size_t(n)] = n % 7 == 3 ? -1 : int32_t(r.below(uint64_t(V)));
        wt[size_t(n)] = n % 5 == 1 ? 0.0f : 0.5f + float(n % 3);
      }
      DVec loss(static_cast<size_t>(N), 0.0), lmag(static_cast<size_t>(N), 0.0),
          grad(static_cast<size_t>(N * V), 0.0), gmag(grad.size(), 0.0);
      for (int64_t n = 0; n < N; n++) {
        const int t = tg[size_t(n)];
        const double w = wt[size_t(n)];
        if (t < 0 || w <= 0) continue;
        const float* row = &lg[size_t(n * V)];
        double mx = row[0], sum = 0;
        for (int64_t i = 0; i < V; i++) mx = std::max(mx, double(row[i]));
        for (int64_t i = 0; i < V; i++) sum += std::exp(row[i] - mx);
        const double lse = mx + std::log(sum);
        loss[size_t(n)] = w * (lse - row[t]);
        lmag[size_t(n)] = w * (std::fabs(lse) + std::fabs(row[t]));
        for (int64_t i = 0; i < V; i++) {
          const double p = std::exp(row[i] - lse), oh = i == t ? 1.0 : 0.0;
          grad[size_t(n * V + i)] = gs * w * (p - oh);
          gmag[size_t(n * V + i)] = gs * w * (p + oh);
        }
      }
      const std::string what = name("cross_entropy", N, V, dt);
      Buffer dl = up(lg, {N, V}, dt), dtg = up_i32(tg), dwt = up(wt, {N}, f32),
             dloss(f32, {N}, Device::cuda), dgrad(dt, {N, V}, Device::cuda);
      std::vector<uint8_t> runs[2][2];
      for (auto& rr : runs) {
        poison(dloss);
        poison(dgrad);
        ops::cross_entropy(dloss, dgrad, dl, dtg, dwt, gs);
        rr[0] = raw(dloss);
        rr[1] = raw(dgrad);
      }
      expect_close(down(dloss), loss, 1e-5, 1e-6, what + " loss", &lmag);
      expect_close(down(dgrad), grad, rtol(dt), 1e-9, what + " dlogits", &gmag);
      EXPECT_TRUE(runs[0][0] == runs[1][0] && runs[0][1] == runs[1][1])
          << what << ": differs between runs";
      poison(dloss);
      ops::cross_entropy(dloss, TensorView{}, dl, dtg, dwt, gs);
      expect_close(down(dloss), loss, 1e-5, 1e-6, what + " loss without dlogits", &lmag);
      poison(dloss);
      ops::cross_entropy(dloss, dl, dl, dtg, dwt, gs);  // dlogits = logits
      expect_close(down(dloss), loss, 1e-5, 1e-6, what + " loss in place", &lmag);
      expect_close(down(dl), grad, rtol(dt), 1e-9, what + " dlogits in place", &gmag);
    }
}

namespace {
const int64_t kFlatSizes[] = {1, 7, 8, 9, 31, 33, 255, 257, 100003};
// A view of n elements starting one element into b: its base is not 16-byte aligned.
TensorView shifted(const Buffer& b, int64_t n) {
  return make_view(static_cast<char*>(b.view().data) + dtype_size(b.view().dtype), b.view().dtype,
                   {n}, Device::cuda);
}
}  // namespace

TEST(CudaModelOps, AddWithNanInfAliasingAndUnalignedViews) {
  NEED_GPU();
  struct T {
    DType y, a, b;
  };
  for (int64_t n : kFlatSizes)
    for (T t : {T{f32, f32, f32}, T{bf16, bf16, bf16}, T{f32, bf16, f32}, T{bf16, f32, bf16}}) {
      Vec a = rnd(n, 26), b = rnd(n, 27);
      a[size_t(n / 2)] = INFINITY;
      b[size_t(n - 1)] = std::nanf("");
      a = rounded(a, t.a), b = rounded(b, t.b);
      DVec want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; i++) want[size_t(i)] = double(a[size_t(i)]) + b[size_t(i)];
      const std::string what = name("add", n, 1, t.y);
      Buffer da = up(a, {n}, t.a), db = up(b, {n}, t.b), dy(t.y, {n}, Device::cuda);
      poison(dy);
      ops::add(dy, da, db);
      expect_close(down(dy), want, rtol(t.y), 1e-6, what);
      if (t.y == t.a) {
        ops::add(da, da, db);  // y = a
        expect_close(down(da), want, rtol(t.y), 1e-6, what + " in place");
      }
      // Unaligned views take the one-at-a-time path.
      Buffer ua(t.a, {n + 1}, Device::cuda), ub(t.b, {n + 1}, Device::cuda),
          uy(t.y, {n + 1}, Device::cuda);
      copy(shifted(ua, n), up(a, {n}, t.a));
      copy(shifted(ub, n), up(b, {n}, t.b));
      poison(uy);
      ops::add(shifted(uy, n), shifted(ua, n), shifted(ub, n));
      expect_close(down(shifted(uy, n)), want, rtol(t.y), 1e-6, what + " unaligned");
    }
}

TEST(CudaModelOps, ScaleConvertZero) {
  NEED_GPU();
  for (int64_t n : kFlatSizes) {
    Vec x = rnd(n, 28);
    x[0] = INFINITY;
    Buffer dx = up(x, {n}, f32);
    ops::scale(dx, -0.375f);
    DVec want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) want[size_t(i)] = -0.375 * double(x[size_t(i)]);
    expect_close(down(dx), want, 1e-7, 0, name("scale", n, 1, f32));
    // f32 -> bf16 rounds to nearest even, like the host's f32_to_bf16: exact bits.
    Vec src = rnd(n, 29);
    src[size_t(n - 1)] = std::nanf("");
    for (DType from : {f32, bf16})
      for (DType to : {f32, bf16}) {
        const Vec v = rounded(src, from);
        DVec want_c(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; i++) want_c[size_t(i)] = rounded({v[size_t(i)]}, to)[0];
        Buffer s = up(v, {n}, from), d(to, {n}, Device::cuda);
        poison(d);
        ops::convert(d, s);
        expect_close(down(d), want_c, 0, 0, name("convert", n, 1, from) + " to " + dtype_name(to));
        Buffer us(from, {n + 1}, Device::cuda), ud(to, {n + 1}, Device::cuda);
        copy(shifted(us, n), s);
        poison(ud);
        ops::convert(shifted(ud, n), shifted(us, n));
        expect_close(down(shifted(ud, n)), want_c, 0, 0, name("convert unaligned", n, 1, from));
      }
    for (DType dt : {f32, bf16, i32}) {
      Buffer z(dt, {n}, Device::cuda);
      if (dt != i32)
        poison(z);
      else
        copy(z, make_view(std::vector<int32_t>(size_t(n), -1).data(), i32, {n}));
      ops::zero(z);
      const std::vector<uint8_t> b = raw(z);
      EXPECT_TRUE(b == std::vector<uint8_t>(b.size(), 0)) << "zero " << dtype_name(dt) << " " << n;
    }
  }
}

TEST(CudaModelOps, SumSquaresIsDeterministic) {
  NEED_GPU();
  for (int64_t n : {1, 7, 8, 9, 255, 257, 65535, 65536, 65537, 1000003}) {
    const Vec x = rnd(n, 30);
    double want = 0;
    for (float v : x) want += double(v) * v;
    Buffer dx = up(x, {n}, f32);
    const double s1 = ops::sum_squares(dx), s2 = ops::sum_squares(dx);
    EXPECT_NEAR(s1, want, 1e-5 * want) << "sum_squares " << n;
    EXPECT_EQ(std::memcmp(&s1, &s2, sizeof s1), 0) << "sum_squares differs between runs, n = " << n;
    Buffer ux(f32, {n + 1}, Device::cuda);
    copy(shifted(ux, n), dx);
    EXPECT_NEAR(ops::sum_squares(shifted(ux, n)), want, 1e-5 * want)
        << "sum_squares unaligned " << n;
  }
}

TEST(CudaModelOps, AllFiniteFindsNanAndInfAnywhere) {
  NEED_GPU();
  for (int64_t n : {1, 9, 257, 100003})
    for (DType dt : {f32, bf16}) {
      const Vec x = rnd(n, 31);
      EXPECT_TRUE(ops::all_finite(up(x, {n}, dt))) << n;
      for (int64_t at : {int64_t(0), n / 2, n - 1})
        for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
          Vec y = x;
          y[size_t(at)] = bad;
          EXPECT_FALSE(ops::all_finite(up(y, {n}, dt)))
              << dtype_name(dt) << " n " << n << " at " << at << " " << bad;
        }
    }
}

TEST(CudaModelOps, ScatterAndGatherRows) {
  NEED_GPU();
  const int64_t R = 40, N = 12;
  for (DType dt : {f32, bf16, i32})
    for (int64_t C : {1, 3, 4, 5, 8, 33, 64}) {
      const size_t row = size_t(C) * dtype_size(dt);
      Rng r(32);
      auto fill = [&](Buffer& h) {
        auto* p = h.ptr<uint8_t>();
        for (size_t i = 0; i < h.bytes(); i++) p[i] = uint8_t(r.below(256));
        if (dt != i32)  // keep float bit patterns finite (NaN payloads need not survive a copy)
          for (int64_t i = 0; i < h.numel(); i++) store_f32(h.ptr<void>(), dt, i, r.normal());
      };
      Buffer hsrc(dt, {N, C}), hdst(dt, {R, C});
      fill(hsrc);
      fill(hdst);
      std::vector<int32_t> sidx = {3, -1, 0, 39, 7, 8, -1, 20, 21, 1, 38, 12};
      std::vector<uint8_t> want(hdst.ptr<uint8_t>(), hdst.ptr<uint8_t>() + hdst.bytes());
      for (int64_t n = 0; n < N; n++)
        if (sidx[size_t(n)] >= 0)
          std::memcpy(&want[size_t(sidx[size_t(n)]) * row], hsrc.ptr<uint8_t>() + size_t(n) * row,
                      row);
      Buffer src(dt, {N, C}, Device::cuda), dst(dt, {R, C}, Device::cuda);
      copy(src, hsrc);
      copy(dst, hdst);
      ops::scatter_rows(dst, up_i32(sidx), src);
      EXPECT_TRUE(raw(dst) == want) << "scatter_rows " << dtype_name(dt) << " C " << C;
      std::vector<int32_t> gidx(static_cast<size_t>(N));
      for (auto& g : gidx) g = int32_t(r.below(R));
      gidx[0] = int32_t(R - 1), gidx[1] = gidx[2];
      std::vector<uint8_t> want_g(static_cast<size_t>(N) * row);
      for (int64_t n = 0; n < N; n++)
        std::memcpy(&want_g[size_t(n) * row], &want[size_t(gidx[size_t(n)]) * row], row);
      Buffer out(dt, {N, C}, Device::cuda);
      if (dt != i32) poison(out);
      ops::gather_rows(out, dst, up_i32(gidx));
      EXPECT_TRUE(raw(out) == want_g) << "gather_rows " << dtype_name(dt) << " C " << C;
    }
}

TEST(CudaModelOps, AdamWAndItsBf16Copy) {
  NEED_GPU();
  for (int64_t n : {1, 7, 8, 9, 257, 70001})
    for (int64_t t : {1, 7})
      for (bool with_low : {false, true}) {
        ops::AdamWStep s;
        s.lr = 1e-3f, s.weight_decay = t == 1 ? 0.0f : 0.1f, s.t = t;
        const Vec w = rnd(n, 33), g = rnd(n, 34), m = rnd(n, 35, 0.1f);
        Vec v = rnd(n, 36, 0.1f);
        for (float& x : v) x = std::fabs(x);
        const double bc1 = 1 - std::pow(double(s.beta1), double(t)),
                     bc2 = 1 - std::pow(double(s.beta2), double(t));
        DVec ww(static_cast<size_t>(n)), wm(static_cast<size_t>(n)), wv(static_cast<size_t>(n)),
            mw(static_cast<size_t>(n)), mm(static_cast<size_t>(n)), mv(static_cast<size_t>(n));
        for (size_t i = 0; i < size_t(n); i++) {
          const double b1 = s.beta1, b2 = s.beta2;
          wm[i] = b1 * m[i] + (1 - b1) * g[i];
          mm[i] = std::fabs(b1 * m[i]) + std::fabs((1 - b1) * g[i]);
          wv[i] = b2 * v[i] + (1 - b2) * double(g[i]) * g[i];
          mv[i] = std::fabs(wv[i]);
          const double u = wm[i] / bc1 / (std::sqrt(wv[i] / bc2) + s.eps);
          ww[i] = w[i] - s.lr * (u + s.weight_decay * w[i]);
          mw[i] = std::fabs(w[i]) + s.lr * (std::fabs(u) + s.weight_decay * std::fabs(w[i]));
        }
        const std::string what = "adamw n " + std::to_string(n) + " t " + std::to_string(t);
        Buffer dw = up(w, {n}, f32), dg = up(g, {n}, f32), dm = up(m, {n}, f32),
               dv = up(v, {n}, f32), low(bf16, {n}, Device::cuda);
        poison(low);
        ops::adamw(dw, dg, dm, dv, with_low ? low.view() : TensorView{}, s);
        const Vec got_w = down(dw);
        expect_close(got_w, ww, 1e-5, 1e-7, what + " w", &mw);
        expect_close(down(dm), wm, 1e-5, 1e-7, what + " m", &mm);
        expect_close(down(dv), wv, 1e-5, 1e-9, what + " v", &mv);
        if (with_low) {
          const Vec r = rounded(got_w, bf16);
          expect_close(down(low), DVec(r.begin(), r.end()), 0, 0, what + " bf16 copy");
        }
      }
}
