// Masked cross-entropy over the vocabulary on CUDA: one block per row. The first read of the row
// keeps a running (max, sum of exponentials) per thread, merged over the block in a fixed order;
// the second writes the gradient, in place when dlogits aliases logits (each thread rewrites only
// the groups it has just read, and the target's logit is read before any write).
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

constexpr int kThreads = 512;

// Merges the running pair (m2, s2) into (m, s). The products and the sum are rounded one by one
// (no FMA contraction), so merging a into b gives the bits of merging b into a and every lane of
// a butterfly ends with the same pair.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // both empty
  s = __fadd_rn(__fmul_rn(s, expf(m - M)), __fmul_rn(s2, expf(m2 - M)));
  m = M;
}

template <int W>
__global__ void __launch_bounds__(kThreads)
    ce_kernel(float* losses, F dl, F logits, const int32_t* targets, const float* weights,
              int64_t V, float grad_scale) {
  // losses, targets, weights [N]; logits, dl [N, V] (dl.p null: no gradient)
  __shared__ float sh_m[32], sh_s[32];
  const int64_t n = blockIdx.x, base = n * V;
  const int t = targets[n];
  const float w = t < 0 ? 0.0f : weights[n];
  if (!(w > 0)) {  // no loss on this row (a NaN weight included, as ops.h reads)
    if (threadIdx.x == 0) losses[n] = 0;
    if (dl.p) {
      float z[W];
#pragma unroll
      for (int k = 0; k < W; k++) z[k] = 0;
      for (int64_t c = int64_t(threadIdx.x) * W; c < V; c += int64_t(blockDim.x) * W)
        store<W>(dl, base + c, z);
    }
    return;
  }
  const float lt = threadIdx.x == 0 ? logits.get(base + t) : 0.0f;  // before any write
  float m = -INFINITY, s = 0;
  for (int64_t c = int64_t(threadIdx.x) * W; c < V; c += int64_t(blockDim.x) * W) {
    float v[W];
    load<W>(logits, base + c, v);
    float gm = v[0];
#pragma unroll
    for (int k = 1; k < W; k++) gm = fmaxf(gm, v[k]);
    if (gm == -INFINITY) continue;  // nothing to add (and exp(-inf - -inf) would be NaN)
    if (gm > m) {
      s *= expf(m - gm);
      m = gm;
    }
#pragma unroll
    for (int k = 0; k < W; k++) s += expf(v[k] - m);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) sh_m[wp] = m, sh_s[wp] = s;
  __syncthreads();
  m = lane < nw ? sh_m[lane] : -INFINITY;
  s = lane < nw ? sh_s[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  const float lse = m + logf(s);
  if (threadIdx.x == 0) losses[n] = w * (lse - lt);
  if (!dl.p) return;
  const float g = grad_scale * w;
  for (int64_t c = int64_t(threadIdx.x) * W; c < V; c += int64_t(blockDim.x) * W) {
    float v[W];
    load<W>(logits, base + c, v);
#pragma unroll
    for (int k = 0; k < W; k++) v[k] = g * (expf(v[k] - lse) - (c + k == t ? 1.0f : 0.0f));
    store<W>(dl, base + c, v);
  }
}

}  // namespace

void cross_entropy(const TensorView& losses, const TensorView& dlogits, const TensorView& logits,
                   const TensorView& targets, const TensorView& weights, float grad_scale) {
  const int64_t N = rows_of(logits), V = cols_of(logits);
  if (N == 0) return;
  TOPK_CHECK(N < (int64_t(1) << 31), "ops::cross_entropy: %lld rows", (long long)N);
  const F dl = dlogits.ndim ? fview(dlogits) : F{nullptr, false};
  float* out = losses.ptr<float>();
  const int32_t* tg = targets.ptr<int32_t>();
  const float* wt = weights.ptr<float>();
  if (vec8(V, {dl.p, logits.data}))
    ce_kernel<8><<<unsigned(N), kThreads, 0, stream()>>>(out, dl, fview(logits), tg, wt, V,
                                                         grad_scale);
  else
    ce_kernel<1><<<unsigned(N), kThreads, 0, stream()>>>(out, dl, fview(logits), tg, wt, V,
                                                         grad_scale);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
