// RMSNorm forward and backward on CUDA: one warp per row (rows of the hidden size, or of the head
// dim for q/k norms), 16-byte loads when rows allow; the second read of a row hits L1/L2. The
// weight gradient goes through the fixed-order column sums.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

constexpr int kWarps = 8;  // rows per 256-thread block

// y may alias x: each lane reads a group of x before it writes the same group of y.
template <int W>
__global__ void rms_fwd(F y, float* rstd, F x, F w, int64_t N, int64_t H, float eps) {
  // y, x [N, H]; w [H]; rstd [N] or null
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  const int64_t base = n * H;
  float ss = 0;
  for (int64_t c = int64_t(lane) * W; c < H; c += 32 * W) {
    float v[W];
    load<W>(x, base + c, v);
#pragma unroll
    for (int k = 0; k < W; k++) ss += v[k] * v[k];
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / float(H) + eps);
  if (rstd && lane == 0) rstd[n] = r;
  for (int64_t c = int64_t(lane) * W; c < H; c += 32 * W) {
    float v[W], g[W];
    load<W>(x, base + c, v);
    load<W>(w, c, g);
#pragma unroll
    for (int k = 0; k < W; k++) v[k] = g[k] * (v[k] * r);
    store<W>(y, base + c, v);
  }
}

// dx = rstd * dy * w - (sum_i dy_i w_i x_i) * rstd^3 / H * x.
template <int W>
__global__ void rms_bwd(F dx, bool acc, F dy, F x, F w, const float* rstd, int64_t N, int64_t H) {
  // dx (f32), dy, x [N, H]; w [H]; rstd [N]
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  const int64_t base = n * H;
  float dot = 0;
  for (int64_t c = int64_t(lane) * W; c < H; c += 32 * W) {
    float g[W], xv[W], wv[W];
    load<W>(dy, base + c, g);
    load<W>(x, base + c, xv);
    load<W>(w, c, wv);
#pragma unroll
    for (int k = 0; k < W; k++) dot += g[k] * wv[k] * xv[k];
  }
  dot = warp_sum(dot);
  const float r = rstd[n], cc = dot * r * r * r / float(H);
  for (int64_t c = int64_t(lane) * W; c < H; c += 32 * W) {
    float g[W], xv[W], wv[W], d[W];
    load<W>(dy, base + c, g);
    load<W>(x, base + c, xv);
    load<W>(w, c, wv);
    if (acc) load<W>(dx, base + c, d);
#pragma unroll
    for (int k = 0; k < W; k++) {
      const float v = r * g[k] * wv[k] - cc * xv[k];
      d[k] = acc ? d[k] + v : v;
    }
    store<W>(dx, base + c, d);
  }
}

struct DwVal {  // dy * x * rstd: dy, x [N, H], rstd [N]
  F dy, x;
  const float* rstd;
  int64_t H;
  template <int W>
  __device__ void load(int64_t r, int64_t c, float (&v)[W]) const {
    float xv[W];
    cuda::load<W>(dy, r * H + c, v);
    cuda::load<W>(x, r * H + c, xv);
    const float s = rstd[r];
#pragma unroll
    for (int k = 0; k < W; k++) v[k] = v[k] * xv[k] * s;
  }
};

}  // namespace

void rmsnorm_forward(const TensorView& y, const TensorView& rstd, const TensorView& x,
                     const TensorView& w, float eps) {
  const int64_t N = rows_of(x), H = cols_of(x);
  if (N == 0 || H == 0) return;
  const unsigned blocks = unsigned((N + kWarps - 1) / kWarps);
  float* r = rstd.ndim ? rstd.ptr<float>() : nullptr;
  if (vec8(H, {y.data, x.data, w.data}))
    rms_fwd<8><<<blocks, 32 * kWarps, 0, stream()>>>(fview(y), r, fview(x), fview(w), N, H, eps);
  else
    rms_fwd<1><<<blocks, 32 * kWarps, 0, stream()>>>(fview(y), r, fview(x), fview(w), N, H, eps);
  TOPK_CUDA_LAUNCH();
}

void rmsnorm_backward(const TensorView& dx, bool accumulate, const TensorView& dw,
                      const TensorView& dy, const TensorView& x, const TensorView& w,
                      const TensorView& rstd) {
  const int64_t N = rows_of(x), H = cols_of(x);
  if (N == 0 || H == 0) return;
  const unsigned blocks = unsigned((N + kWarps - 1) / kWarps);
  const float* r = rstd.ptr<float>();
  const F fdx = fview(dx), fdy = fview(dy), fx = fview(x), fw = fview(w);
  if (vec8(H, {dx.data, dy.data, x.data, w.data}))
    rms_bwd<8><<<blocks, 32 * kWarps, 0, stream()>>>(fdx, accumulate, fdy, fx, fw, r, N, H);
  else
    rms_bwd<1><<<blocks, 32 * kWarps, 0, stream()>>>(fdx, accumulate, fdy, fx, fw, r, N, H);
  TOPK_CUDA_LAUNCH();
  if (dw.ndim) column_sums(N, H, vec8(H, {dy.data, x.data}), DwVal{fdy, fx, r, H}, dw.ptr<float>());
}

}  // namespace topk::ops::cuda
