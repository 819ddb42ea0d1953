// SwiGLU forward and backward on CUDA; gu holds [gate | up] per row. Row launches over the I
// columns of act, 16-byte groups when I and the tensors allow.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

template <int W>
__global__ void swiglu_fwd(F act, F gu, int64_t N, int64_t I) {  // act [N, I], gu [N, 2I]
  const int64_t c = pack_col<W>();
  if (c >= I) return;
  TOPK_ROW_LOOP(n, N) {
    float g[W], u[W];
    load<W>(gu, n * 2 * I + c, g);
    load<W>(gu, n * 2 * I + I + c, u);
#pragma unroll
    for (int k = 0; k < W; k++) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    store<W>(act, n * I + c, g);
  }
}

// d act / d gate = u * s * (1 + g (1 - s)), d act / d up = g * s, s = sigmoid(g). dgu may alias gu:
// a thread reads its gate and up groups before it writes them.
template <int W>
__global__ void swiglu_bwd(F dgu, F dact, F gu, int64_t N, int64_t I) {
  // dgu, gu [N, 2I]; dact [N, I]
  const int64_t c = pack_col<W>();
  if (c >= I) return;
  TOPK_ROW_LOOP(n, N) {
    float g[W], u[W], d[W];
    load<W>(gu, n * 2 * I + c, g);
    load<W>(gu, n * 2 * I + I + c, u);
    load<W>(dact, n * I + c, d);
#pragma unroll
    for (int k = 0; k < W; k++) {
      const float s = 1.0f / (1.0f + expf(-g[k])), gk = g[k];
      g[k] = d[k] * u[k] * s * (1.0f + gk * (1.0f - s));
      u[k] = d[k] * gk * s;
    }
    store<W>(dgu, n * 2 * I + c, g);
    store<W>(dgu, n * 2 * I + I + c, u);
  }
}

}  // namespace

void swiglu_forward(const TensorView& act, const TensorView& gu) {
  const int64_t N = rows_of(act), I = cols_of(act);
  if (N == 0 || I == 0) return;
  if (vec8(I, {act.data, gu.data})) {
    const RowLaunch l = row_launch(N, I / 8);
    swiglu_fwd<8><<<l.grid, l.block, 0, stream()>>>(fview(act), fview(gu), N, I);
  } else {
    const RowLaunch l = row_launch(N, I);
    swiglu_fwd<1><<<l.grid, l.block, 0, stream()>>>(fview(act), fview(gu), N, I);
  }
  TOPK_CUDA_LAUNCH();
}

void swiglu_backward(const TensorView& dgu, const TensorView& dact, const TensorView& gu) {
  const int64_t N = rows_of(dact), I = cols_of(dact);
  if (N == 0 || I == 0) return;
  if (vec8(I, {dgu.data, dact.data, gu.data})) {
    const RowLaunch l = row_launch(N, I / 8);
    swiglu_bwd<8><<<l.grid, l.block, 0, stream()>>>(fview(dgu), fview(dact), fview(gu), N, I);
  } else {
    const RowLaunch l = row_launch(N, I);
    swiglu_bwd<1><<<l.grid, l.block, 0, stream()>>>(fview(dgu), fview(dact), fview(gu), N, I);
  }
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
