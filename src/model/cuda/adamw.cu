// AdamW on CUDA: one elementwise pass that updates the moments and the f32 master weights and,
// when asked, rewrites their bf16 copy (rounded to nearest even, as ops::convert does).
#include <cmath>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, __nv_bfloat16* low,
                             int64_t n, float lr, float b1, float b2, float eps, float decay,
                             float bc1, float bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1 - b1) * gi;
    const float vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float mh = mi / bc1, vh = vi / bc2;
    const float wi = w[i] - lr * (mh / (sqrtf(vh) + eps) + decay * w[i]);
    w[i] = wi;
    if (low) low[i] = __float2bfloat16(wi);
  }
}

}  // namespace

void adamw(const TensorView& w, const TensorView& grad, const TensorView& m, const TensorView& v,
           const TensorView& w_low, const AdamWStep& s) {
  const int64_t n = w.numel();
  if (n == 0) return;
  const float bc1 = 1.0f - std::pow(s.beta1, float(s.t));
  const float bc2 = 1.0f - std::pow(s.beta2, float(s.t));
  adamw_kernel<<<grid_for(n), 256, 0, stream()>>>(w.ptr<float>(), grad.ptr<float>(), m.ptr<float>(),
                                     v.ptr<float>(),
                                     w_low.ndim ? static_cast<__nv_bfloat16*>(w_low.data) : nullptr,
                                     n, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, bc1, bc2);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
