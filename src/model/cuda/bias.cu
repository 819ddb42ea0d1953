// Bias add and its gradient on CUDA. The add is a row launch (each thread keeps its bias group in
// registers down the rows); the gradient goes through the fixed-order column sums.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

template <int W>
__global__ void add_bias_kernel(F y, F b, int64_t N, int64_t C) {  // y [N, C], b [C]
  const int64_t c = pack_col<W>();
  if (c >= C) return;
  float bv[W];
  load<W>(b, c, bv);
  TOPK_ROW_LOOP(n, N) {
    float v[W];
    load<W>(y, n * C + c, v);
#pragma unroll
    for (int k = 0; k < W; k++) v[k] += bv[k];
    store<W>(y, n * C + c, v);
  }
}

struct RowVal {  // dy [N, C]
  F dy;
  int64_t C;
  template <int W>
  __device__ void load(int64_t r, int64_t c, float (&v)[W]) const {
    cuda::load<W>(dy, r * C + c, v);
  }
};

}  // namespace

void add_bias(const TensorView& y, const TensorView& b) {
  const int64_t N = rows_of(y), C = cols_of(y);
  if (N == 0 || C == 0) return;
  if (vec8(C, {y.data, b.data})) {
    const RowLaunch l = row_launch(N, C / 8);
    add_bias_kernel<8><<<l.grid, l.block, 0, stream()>>>(fview(y), fview(b), N, C);
  } else {
    const RowLaunch l = row_launch(N, C);
    add_bias_kernel<1><<<l.grid, l.block, 0, stream()>>>(fview(y), fview(b), N, C);
  }
  TOPK_CUDA_LAUNCH();
}

void bias_grad(const TensorView& db, const TensorView& dy) {
  const int64_t C = cols_of(dy);
  column_sums(rows_of(dy), C, vec8(C, {dy.data}), RowVal{fview(dy), C}, db.ptr<float>());
}

}  // namespace topk::ops::cuda
