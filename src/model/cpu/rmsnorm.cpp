// RMSNorm forward and backward on the CPU. dw runs over columns, each summing its rows in
// order, so the result does not depend on the thread count.
#include <cmath>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void rmsnorm_forward(const TensorView& y, const TensorView& rstd, const TensorView& x,
                     const TensorView& w, float eps) {
  const int64_t N = rows_of(x), H = cols_of(x);
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  float* py = y.ptr<float>();
  float* pr = rstd.ndim ? rstd.ptr<float>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* xr = px + n * H;
    float ss = 0;
    for (int64_t i = 0; i < H; i++) ss += xr[i] * xr[i];
    float r = 1.0f / std::sqrt(ss / float(H) + eps);
    if (pr) pr[n] = r;
    float* yr = py + n * H;
    for (int64_t i = 0; i < H; i++) yr[i] = pw[i] * (xr[i] * r);
  }
}

void rmsnorm_backward(const TensorView& dx, bool accumulate, const TensorView& dw,
                      const TensorView& dy, const TensorView& x, const TensorView& w,
                      const TensorView& rstd) {
  const int64_t N = rows_of(x), H = cols_of(x);
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* g = dy.ptr<float>();
  const float* pr = rstd.ptr<float>();
  float* pdx = dx.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* xr = px + n * H;
    const float* gr = g + n * H;
    float r = pr[n], dot = 0;
    for (int64_t i = 0; i < H; i++) dot += gr[i] * pw[i] * xr[i];
    float c = dot * r * r * r / float(H);
    float* d = pdx + n * H;
    for (int64_t i = 0; i < H; i++) {
      float v = r * gr[i] * pw[i] - c * xr[i];
      d[i] = accumulate ? d[i] + v : v;
    }
  }
  if (!dw.ndim) return;
  float* pdw = dw.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < H; i++) {
    float s = 0;
    for (int64_t n = 0; n < N; n++) s += g[n * H + i] * px[n * H + i] * pr[n];
    pdw[i] += s;
  }
}

}  // namespace topk::ops::cpu
