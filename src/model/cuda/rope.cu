// Rotary embedding on CUDA, in place: one thread per (row, head, pair). The angle is the same
// f32 product pos * inv_freq the CPU computes, with full-precision sincosf.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

__global__ void rope_kernel(F x, const int32_t* pos, const float* inv_freq, int64_t N, int64_t Hh,
                            int64_t half, bool inverse) {
  const int64_t n_items = N * Hh * half;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_items;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % half, row = i / half, n = row / Hh;
    float s, c;
    sincosf(float(pos[n]) * inv_freq[j], &s, &c);
    if (inverse) s = -s;
    const int64_t a = row * 2 * half + j, b = a + half;
    const float u = x.get(a), v = x.get(b);
    x.set(a, u * c - v * s);
    x.set(b, v * c + u * s);
  }
}

}  // namespace

void rope(const TensorView& x, const TensorView& pos, const TensorView& inv_freq, bool inverse) {
  const int64_t N = x.shape[0], Hh = x.shape[1], half = x.shape[2] / 2;
  if (N * Hh * half == 0) return;
  rope_kernel<<<grid_for(N * Hh * half), 256, 0, stream()>>>(fview(x), pos.ptr<int32_t>(), inv_freq.ptr<float>(),
                                                N, Hh, half, inverse);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
