// Reductions and selection helpers of the CUDA attention kernels: scattered warp sums, the
// inverse of order_key (select_rule.h), shared-memory histograms, block scans.
#pragma once
#include "attention/cuda/common.cuh"

namespace topk::cuda {

// Sum of v[0..N) over groups of W consecutive lanes, scattered: afterwards lane l of a group
// holds in v[0..N/W) the sums of entries (l % W) * (N / W) + i. N >= W, both powers of two.
template <int N, int OFF, int n>
__device__ __forceinline__ void reduce_scatter_step(float (&v)[N], int lane) {
  if constexpr (OFF >= 1) {
    bool upper = (lane & OFF) != 0;
#pragma unroll
    for (int i = 0; i < n / 2; i++) {
      float send = upper ? v[i] : v[i + n / 2];
      float keep = upper ? v[i + n / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
    }
    reduce_scatter_step<N, OFF / 2, n / 2>(v, lane);
  }
}
template <int N, int W>
__device__ __forceinline__ void reduce_scatter(float (&v)[N]) {
  static_assert(N >= W, "reduce_scatter needs N >= W");
  reduce_scatter_step<N, W / 2, N>(v, int(threadIdx.x & 31));
}

// order_key, the budget and the forced keys of a row (row_sel): attention/select_rule.h.

// Inverse of order_key (NaN keys come back as a NaN).
__device__ __forceinline__ float key_score(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// hist[bin] += 1 for every lane with `on`, one shared-memory atomic per distinct bin of the
// warp: scores bunch into few bins, and atomics on one address serialize. Every lane of the
// warp must call it.
__device__ __forceinline__ void hist_add(int* hist, int bin, bool on) {
  const unsigned active = __ballot_sync(0xffffffffu, on);
  if (!on) return;
  const unsigned peers = __match_any_sync(active, bin);
  if (int(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
}

// Block-wide exclusive scan of one int per thread (blockDim.x a multiple of 32, <= 1024).
// `tmp` holds 33 ints of shared memory. Returns the exclusive prefix; *total gets the sum.
__device__ __forceinline__ int block_exclusive_scan(int x, int* tmp, int* total) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int v = x;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    int y = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += y;
  }
  if (lane == 31) tmp[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = lane < nw ? tmp[lane] : 0;
    int s = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      int y = __shfl_up_sync(0xffffffffu, s, o);
      if (lane >= o) s += y;
    }
    if (lane < nw) tmp[lane] = s - w;
    if (lane == 31) tmp[32] = s;
  }
  __syncthreads();
  int r = tmp[warp] + v - x;
  *total = tmp[32];
  __syncthreads();
  return r;
}

}  // namespace topk::cuda
