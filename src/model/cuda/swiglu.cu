// SwiGLU forward and backward on CUDA; gu holds [gate | up] per row.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

__global__ void swiglu_fwd(F act, F gu, int64_t N, int64_t I) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * I;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / I, c = i % I;
    const float g = gu.get(n * 2 * I + c), u = gu.get(n * 2 * I + I + c);
    act.set(i, g / (1.0f + expf(-g)) * u);
  }
}

__global__ void swiglu_bwd(F dgu, F dact, F gu, int64_t N, int64_t I) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * I;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / I, c = i % I;
    const float g = gu.get(n * 2 * I + c), u = gu.get(n * 2 * I + I + c);
    const float s = 1.0f / (1.0f + expf(-g)), d = dact.get(i);
    dgu.set(n * 2 * I + c, d * u * s * (1.0f + g * (1.0f - s)));
    dgu.set(n * 2 * I + I + c, d * g * s);
  }
}

}  // namespace

void swiglu_forward(const TensorView& act, const TensorView& gu) {
  const int64_t N = rows_of(act), I = cols_of(act);
  if (N * I == 0) return;
  swiglu_fwd<<<grid_for(N * I), 256, 0, stream()>>>(fview(act), fview(gu), N, I);
  TOPK_CUDA_LAUNCH();
}

void swiglu_backward(const TensorView& dgu, const TensorView& dact, const TensorView& gu) {
  const int64_t N = rows_of(dact), I = cols_of(dact);
  if (N * I == 0) return;
  swiglu_bwd<<<grid_for(N * I), 256, 0, stream()>>>(fview(dgu), fview(dact), fview(gu), N, I);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
