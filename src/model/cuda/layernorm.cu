// LayerNorm forward and backward on CUDA (the Lightning Indexer's key norm): one warp per row, a
// fixed butterfly for the row sums (mean first, then the centred squares); the weight and bias
// gradients go through the fixed-order column sums. Deterministic.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

constexpr int kWarps = 8;  // rows per 256-thread block

template <int W>
__global__ void ln_fwd(F y, float* mean, float* rstd, F x, F w, F b, int64_t N, int64_t C, float eps) {
  // y, x [N, C]; w, b [C]; mean, rstd [N] or null
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  const int64_t base = n * C;
  float s = 0;
  for (int64_t c = int64_t(lane) * W; c < C; c += 32 * W) {
    float v[W];
    load<W>(x, base + c, v);
#pragma unroll
    for (int k = 0; k < W; k++) s += v[k];
  }
  const float mu = warp_sum(s) / float(C);
  float ss = 0;
  for (int64_t c = int64_t(lane) * W; c < C; c += 32 * W) {
    float v[W];
    load<W>(x, base + c, v);
#pragma unroll
    for (int k = 0; k < W; k++) ss += (v[k] - mu) * (v[k] - mu);
  }
  const float r = rsqrtf(warp_sum(ss) / float(C) + eps);
  if (rstd && lane == 0) mean[n] = mu, rstd[n] = r;
  for (int64_t c = int64_t(lane) * W; c < C; c += 32 * W) {
    float v[W], g[W], bb[W];
    load<W>(x, base + c, v);
    load<W>(w, c, g);
    load<W>(b, c, bb);
#pragma unroll
    for (int k = 0; k < W; k++) v[k] = (v[k] - mu) * r * g[k] + bb[k];
    store<W>(y, base + c, v);
  }
}

// dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w, xhat = (x - mean) rstd.
template <int W>
__global__ void ln_bwd(F dx, F dy, F x, F w, const float* mean, const float* rstd, int64_t N, int64_t C) {
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  const int64_t base = n * C;
  const float mu = mean[n], r = rstd[n];
  float sg = 0, sgx = 0;
  for (int64_t c = int64_t(lane) * W; c < C; c += 32 * W) {
    float g[W], xv[W], wv[W];
    load<W>(dy, base + c, g);
    load<W>(x, base + c, xv);
    load<W>(w, c, wv);
#pragma unroll
    for (int k = 0; k < W; k++) {
      const float gi = g[k] * wv[k];
      sg += gi;
      sgx += gi * (xv[k] - mu) * r;
    }
  }
  sg = warp_sum(sg) / float(C);
  sgx = warp_sum(sgx) / float(C);
  for (int64_t c = int64_t(lane) * W; c < C; c += 32 * W) {
    float g[W], xv[W], wv[W], d[W];
    load<W>(dy, base + c, g);
    load<W>(x, base + c, xv);
    load<W>(w, c, wv);
#pragma unroll
    for (int k = 0; k < W; k++) d[k] = r * (g[k] * wv[k] - sg - (xv[k] - mu) * r * sgx);
    store<W>(dx, base + c, d);
  }
}

struct DwVal {  // dy * xhat
  F dy, x;
  const float* mean;
  const float* rstd;
  int64_t C;
  template <int W>
  __device__ void load(int64_t r, int64_t c, float (&v)[W]) const {
    float xv[W];
    cuda::load<W>(dy, r * C + c, v);
    cuda::load<W>(x, r * C + c, xv);
    const float mu = mean[r], s = rstd[r];
#pragma unroll
    for (int k = 0; k < W; k++) v[k] = v[k] * ((xv[k] - mu) * s);
  }
};
struct DbVal {  // dy
  F dy;
  int64_t C;
  template <int W>
  __device__ void load(int64_t r, int64_t c, float (&v)[W]) const {
    cuda::load<W>(dy, r * C + c, v);
  }
};

}  // namespace

void layernorm_forward(const TensorView& y, const TensorView& mean, const TensorView& rstd,
                       const TensorView& x, const TensorView& w, const TensorView& b, float eps) {
  const int64_t N = rows_of(x), C = cols_of(x);
  if (N == 0 || C == 0) return;
  const unsigned blocks = unsigned((N + kWarps - 1) / kWarps);
  float* m = mean.ndim ? mean.ptr<float>() : nullptr;
  float* r = rstd.ndim ? rstd.ptr<float>() : nullptr;
  if (vec8(C, {y.data, x.data, w.data, b.data}))
    ln_fwd<8><<<blocks, 32 * kWarps, 0, stream()>>>(fview(y), m, r, fview(x), fview(w), fview(b), N, C, eps);
  else
    ln_fwd<1><<<blocks, 32 * kWarps, 0, stream()>>>(fview(y), m, r, fview(x), fview(w), fview(b), N, C, eps);
  TOPK_CUDA_LAUNCH();
}

void layernorm_backward(const TensorView& dx, const TensorView& dw, const TensorView& db,
                        const TensorView& dy, const TensorView& x, const TensorView& w,
                        const TensorView& mean, const TensorView& rstd) {
  const int64_t N = rows_of(x), C = cols_of(x);
  if (N == 0 || C == 0) return;
  const unsigned blocks = unsigned((N + kWarps - 1) / kWarps);
  const float* m = mean.ptr<float>();
  const float* r = rstd.ptr<float>();
  const F fdx = fview(dx), fdy = fview(dy), fx = fview(x), fw = fview(w);
  const bool v = vec8(C, {dx.data, dy.data, x.data, w.data});
  if (v) ln_bwd<8><<<blocks, 32 * kWarps, 0, stream()>>>(fdx, fdy, fx, fw, m, r, N, C);
  else ln_bwd<1><<<blocks, 32 * kWarps, 0, stream()>>>(fdx, fdy, fx, fw, m, r, N, C);
  TOPK_CUDA_LAUNCH();
  const bool vc = vec8(C, {dy.data, x.data});
  column_sums(N, C, vc, DwVal{fdy, fx, m, r, C}, dw.ptr<float>());
  column_sums(N, C, vc, DbVal{fdy, C}, db.ptr<float>());
}

}  // namespace topk::ops::cuda
