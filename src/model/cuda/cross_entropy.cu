// Masked cross-entropy over the vocabulary on CUDA: one block per row; a first read finds the
// row's maximum and sum of exponentials (fixed-order block reductions), a second writes the
// gradient, in place when dlogits aliases logits.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

constexpr int kThreads = 512;

__global__ void ce_kernel(float* losses, F dl, bool has_dl, F logits, const int32_t* targets,
                          const float* weights, int64_t V, float grad_scale) {
  __shared__ float sh[32];
  const int64_t n = blockIdx.x;
  const int t = targets[n];
  const float w = t < 0 ? 0.0f : weights[n];
  const int64_t base = n * V;
  if (w <= 0) {
    if (threadIdx.x == 0) losses[n] = 0;
    if (has_dl)
      for (int64_t i = threadIdx.x; i < V; i += blockDim.x) dl.set(base + i, 0.0f);
    return;
  }
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) mx = fmaxf(mx, logits.get(base + i));
  mx = block_max(mx, sh);
  float s = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) s += expf(logits.get(base + i) - mx);
  s = block_sum(s, sh);
  const float lse = mx + logf(s);
  const float lt = logits.get(base + t);
  __syncthreads();  // every thread has read logits[t] before the gradient overwrites it
  if (threadIdx.x == 0) losses[n] = w * (lse - lt);
  if (!has_dl) return;
  const float g = grad_scale * w;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float p = expf(logits.get(base + i) - lse);
    dl.set(base + i, g * (p - (i == t ? 1.0f : 0.0f)));
  }
}

}  // namespace

void cross_entropy(const TensorView& losses, const TensorView& dlogits, const TensorView& logits,
                   const TensorView& targets, const TensorView& weights, float grad_scale) {
  const int64_t N = rows_of(logits), V = cols_of(logits);
  if (N == 0) return;
  const bool has = dlogits.ndim > 0;
  ce_kernel<<<unsigned(N), kThreads, 0, stream()>>>(losses.ptr<float>(), has ? fview(dlogits) : F{nullptr, false},
                                       has, fview(logits), targets.ptr<int32_t>(),
                                       weights.ptr<float>(), V, grad_scale);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
