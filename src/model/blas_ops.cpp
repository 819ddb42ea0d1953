#include "model/blas_ops.h"

#include <cblas.h>

#include <cmath>
#include <cstring>

namespace topk {

void linear_fwd(const float* x, const float* W, const float* b, float* y, int N, int in, int out) {
  if (N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
  if (b)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++) y[size_t(n) * out + o] += b[o];
}

void linear_bwd(const float* x, const float* W, const float* dy, float* dx, bool dx_acc, float* dW,
                float* db, int N, int in, int out) {
  if (N == 0) return;
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in,
                dx_acc ? 1.0f : 0.0f, dx, in);
  if (dW)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f,
                dW, in);
  if (db)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++) db[o] += dy[size_t(n) * out + o];
}

void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int N, int H, float eps) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + size_t(n) * H;
    float* yr = y + size_t(n) * H;
    float ss = 0;
    for (int i = 0; i < H; i++) ss += xr[i] * xr[i];
    float r = 1.0f / std::sqrt(ss / float(H) + eps);
    rstd[n] = r;
    for (int i = 0; i < H; i++) yr[i] = w[i] * (xr[i] * r);
  }
}

void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                 float* dw, int N, int H) {
  for (int n = 0; n < N; n++) {
    const float* xr = x + size_t(n) * H;
    const float* g = dy + size_t(n) * H;
    float r = rstd[n], dot = 0;
    for (int i = 0; i < H; i++) {
      dot += g[i] * w[i] * xr[i];
      if (dw) dw[i] += g[i] * xr[i] * r;
    }
    float c = dot * r * r * r / float(H);
    float* d = dx + size_t(n) * H;
    for (int i = 0; i < H; i++) d[i] += r * g[i] * w[i] - c * xr[i];
  }
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  int D = c.head_dim;
  std::vector<float> f(size_t(D / 2));
  for (int i = 0; i < D / 2; i++) {
    float e = float(2 * i) / float(D);
    f[i] = 1.0f / std::pow(float(c.rope.theta), e);
  }
  if (c.rope.llama3) {
    const double pi = 3.141592653589793, old = c.rope.original_max_pos;
    double lo = c.rope.low_freq_factor, hi = c.rope.high_freq_factor, fac = c.rope.factor;
    double low_wl = old / lo, high_wl = old / hi;
    for (auto& v : f) {
      double wl = 2 * pi / double(v), s = v;
      if (wl > low_wl) {
        s = v / fac;
      } else if (wl >= high_wl) {  // between: smooth interpolation
        double sm = (old / wl - lo) / (hi - lo);
        s = (1 - sm) * v / fac + sm * v;
      }
      v = float(s);
    }
  }
  return f;
}

void rope_apply(float* x, const int* pos, int N, int Hh, int D, const float* inv_freq, bool inverse) {
  int half = D / 2;
  std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int n = 0; n < N; n++) {
    for (int i = 0; i < half; i++) {
      float a = float(pos[n]) * inv_freq[i];
      cs[i] = std::cos(a);
      sn[i] = inverse ? -std::sin(a) : std::sin(a);
    }
    for (int h = 0; h < Hh; h++) {
      float* r = x + (size_t(n) * Hh + h) * D;
      for (int i = 0; i < half; i++) {
        float a = r[i], b = r[i + half];
        r[i] = a * cs[i] - b * sn[i];
        r[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

}  // namespace topk
