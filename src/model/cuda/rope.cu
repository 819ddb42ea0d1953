// Rotary embedding on CUDA, in place (Hugging Face rotate_half layout). A thread owns W pair
// indices i of one row n: it computes their angles once (the f32 product pos * inv_freq, as the
// CPU op does, with full-precision sincosf) and turns those pairs in every head of the row.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

template <int W>
__global__ void rope_kernel(F x, const int32_t* pos, const float* inv_freq, int64_t N, int64_t Hh,
                            int64_t half, bool inverse) {
  // x [N, Hh, 2 half], pos [N], inv_freq [half]
  const int64_t i = pack_col<W>();
  if (i >= half) return;
  TOPK_ROW_LOOP(n, N) {
    const float p = float(pos[n]);
    float c[W], s[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
      sincosf(p * inv_freq[i + k], &s[k], &c[k]);
      if (inverse) s[k] = -s[k];
    }
    for (int64_t h = 0; h < Hh; h++) {
      const int64_t a = (n * Hh + h) * 2 * half + i;
      float u[W], v[W];
      load<W>(x, a, u);
      load<W>(x, a + half, v);
#pragma unroll
      for (int k = 0; k < W; k++) {
        const float t = u[k];
        u[k] = t * c[k] - v[k] * s[k];
        v[k] = v[k] * c[k] + t * s[k];
      }
      store<W>(x, a, u);
      store<W>(x, a + half, v);
    }
  }
}

}  // namespace

void rope(const TensorView& x, const TensorView& pos, const TensorView& inv_freq, bool inverse) {
  const int64_t N = x.shape[0], Hh = x.shape[1], half = x.shape[2] / 2;
  if (N == 0 || Hh == 0 || half == 0) return;
  const int32_t* p = pos.ptr<int32_t>();
  const float* f = inv_freq.ptr<float>();
  // Both halves of every row start on 8-element boundaries when half is a multiple of 8.
  if (vec8(half, {x.data})) {
    const RowLaunch l = row_launch(N, half / 8);
    rope_kernel<8><<<l.grid, l.block, 0, stream()>>>(fview(x), p, f, N, Hh, half, inverse);
  } else {
    const RowLaunch l = row_launch(N, half);
    rope_kernel<1><<<l.grid, l.block, 0, stream()>>>(fview(x), p, f, N, Hh, half, inverse);
  }
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
