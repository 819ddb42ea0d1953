// RMSNorm forward and backward on CUDA: one warp per row (rows of a few hundred to a few
// thousand values; q/k norms have rows of the head dim); the weight gradient through the
// fixed-order column sums.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

constexpr int kWarps = 8;

__global__ void rms_fwd(F y, float* rstd, F x, F w, int64_t N, int64_t H, float eps) {
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  float ss = 0;
  for (int64_t i = lane; i < H; i += 32) {
    const float v = x.get(n * H + i);
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float r = rsqrtf(ss / float(H) + eps);
  if (rstd && lane == 0) rstd[n] = r;
  for (int64_t i = lane; i < H; i += 32) y.set(n * H + i, w.get(i) * (x.get(n * H + i) * r));
}

__global__ void rms_bwd(float* dx, bool acc, F dy, F x, F w, const float* rstd, int64_t N,
                        int64_t H) {
  const int64_t n = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (n >= N) return;
  float dot = 0;
  for (int64_t i = lane; i < H; i += 32) dot += dy.get(n * H + i) * w.get(i) * x.get(n * H + i);
  dot = warp_sum(dot);
  const float r = rstd[n], c = dot * r * r * r / float(H);
  for (int64_t i = lane; i < H; i += 32) {
    const float v = r * dy.get(n * H + i) * w.get(i) - c * x.get(n * H + i);
    dx[n * H + i] = acc ? dx[n * H + i] + v : v;
  }
}

struct DwVal {
  F dy, x;
  const float* rstd;
  int64_t H;
  __device__ float operator()(int64_t r, int64_t c) const {
    return dy.get(r * H + c) * x.get(r * H + c) * rstd[r];
  }
};

}  // namespace

void rmsnorm_forward(const TensorView& y, const TensorView& rstd, const TensorView& x,
                     const TensorView& w, float eps) {
  const int64_t N = rows_of(x), H = cols_of(x);
  if (N == 0) return;
  rms_fwd<<<unsigned((N + kWarps - 1) / kWarps), 32 * kWarps, 0, stream()>>>(
      fview(y), rstd.ndim ? rstd.ptr<float>() : nullptr, fview(x), fview(w), N, H, eps);
  TOPK_CUDA_LAUNCH();
}

void rmsnorm_backward(const TensorView& dx, bool accumulate, const TensorView& dw,
                      const TensorView& dy, const TensorView& x, const TensorView& w,
                      const TensorView& rstd) {
  const int64_t N = rows_of(x), H = cols_of(x);
  if (N == 0) return;
  rms_bwd<<<unsigned((N + kWarps - 1) / kWarps), 32 * kWarps, 0, stream()>>>(
      dx.ptr<float>(), accumulate, fview(dy), fview(x), fview(w), rstd.ptr<float>(), N, H);
  TOPK_CUDA_LAUNCH();
  if (dw.ndim) column_sums(N, H, DwVal{fview(dy), fview(x), rstd.ptr<float>(), H}, dw.ptr<float>());
}

}  // namespace topk::ops::cuda
