// LayerNorm forward and backward on the CPU (the Lightning Indexer's key norm). Row statistics
// in double; dw and db run over columns, each summing its rows in order, so the result does not
// depend on the thread count.
#include <cmath>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void layernorm_forward(const TensorView& y, const TensorView& mean, const TensorView& rstd,
                       const TensorView& x, const TensorView& w, const TensorView& b, float eps) {
  const int64_t N = rows_of(x), C = cols_of(x);
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* pb = b.ptr<float>();
  float* py = y.ptr<float>();
  float* pm = mean.ndim ? mean.ptr<float>() : nullptr;
  float* pr = rstd.ndim ? rstd.ptr<float>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* xr = px + n * C;
    double s = 0, ss = 0;
    for (int64_t i = 0; i < C; i++) s += xr[i];
    const float mu = float(s / double(C));
    for (int64_t i = 0; i < C; i++) ss += double(xr[i] - mu) * double(xr[i] - mu);
    const float r = float(1.0 / std::sqrt(ss / double(C) + double(eps)));
    if (pm) pm[n] = mu, pr[n] = r;
    float* yr = py + n * C;
    for (int64_t i = 0; i < C; i++) yr[i] = (xr[i] - mu) * r * pw[i] + pb[i];
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w, xhat = (x - mean) * rstd.
void layernorm_backward(const TensorView& dx, const TensorView& dw, const TensorView& db,
                        const TensorView& dy, const TensorView& x, const TensorView& w,
                        const TensorView& mean, const TensorView& rstd) {
  const int64_t N = rows_of(x), C = cols_of(x);
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* g = dy.ptr<float>();
  const float* pm = mean.ptr<float>();
  const float* pr = rstd.ptr<float>();
  float* pdx = dx.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* xr = px + n * C;
    const float* gr = g + n * C;
    const float mu = pm[n], r = pr[n];
    float sg = 0, sgx = 0;
    for (int64_t i = 0; i < C; i++) {
      const float gi = gr[i] * pw[i], xh = (xr[i] - mu) * r;
      sg += gi;
      sgx += gi * xh;
    }
    sg /= float(C);
    sgx /= float(C);
    float* d = pdx + n * C;
    for (int64_t i = 0; i < C; i++) d[i] = r * (gr[i] * pw[i] - sg - (xr[i] - mu) * r * sgx);
  }
  float* pdw = dw.ptr<float>();
  float* pdb = db.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < C; i++) {
    float sw = 0, sb = 0;
    for (int64_t n = 0; n < N; n++) {
      sw += g[n * C + i] * (px[n * C + i] - pm[n]) * pr[n];
      sb += g[n * C + i];
    }
    pdw[i] += sw;
    pdb[i] += sb;
  }
}

}  // namespace topk::ops::cpu
