// Bias add and its gradient on CUDA (the gradient through the fixed-order column sums).
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

__global__ void add_bias_kernel(F y, F b, int64_t n, int64_t C) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y.set(i, y.get(i) + b.get(i % C));
}

struct RowVal {
  F dy;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t c) const { return dy.get(r * C + c); }
};

}  // namespace

void add_bias(const TensorView& y, const TensorView& b) {
  const int64_t n = y.numel(), C = cols_of(y);
  if (n == 0) return;
  add_bias_kernel<<<grid_for(n), 256, 0, stream()>>>(fview(y), fview(b), n, C);
  TOPK_CUDA_LAUNCH();
}

void bias_grad(const TensorView& db, const TensorView& dy) {
  const int64_t C = cols_of(dy);
  column_sums(rows_of(dy), C, RowVal{fview(dy), C}, db.ptr<float>());
}

}  // namespace topk::ops::cuda
