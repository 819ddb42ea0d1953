// Shared helpers of the CUDA model ops: element loads and stores of f32 or bf16 tensors,
// fixed-order block reductions, and launch shapes. Every reduction here sums in one fixed order,
// so results are the same bits on every run.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.cuh"
#include "model/ops_impl.h"

namespace topk::ops::cuda {

// The stream every model op runs on: topk::cuda_stream() (nullptr, the legacy default stream,
// unless a caller set one).
inline cudaStream_t stream() { return static_cast<cudaStream_t>(::topk::cuda_stream()); }

inline bool is_bf16(const TensorView& t) { return t.dtype == DType::bf16; }

// A float tensor as kernels see it: a pointer and whether it holds bf16 (else f32).
struct F {
  void* p;
  bool bf;
  __device__ __forceinline__ float get(int64_t i) const {
    return bf ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
  __device__ __forceinline__ void set(int64_t i, float v) const {
    if (bf) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
    else static_cast<float*>(p)[i] = v;
  }
};
inline F fview(const TensorView& t) { return F{t.data, is_bf16(t)}; }

// Grid of `threads`-thread blocks covering n items with a grid-stride loop (capped so that
// huge tensors do not launch millions of blocks).
inline unsigned grid_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : b > 65536 ? 65536 : b);
}

// Sum over a warp, in a fixed butterfly order.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of up to 1024 threads; every thread gets the result. `sh` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(v);
}

// Scratch on the device that grows on demand (one per purpose; not thread-safe, like the rest
// of the CUDA backend).
enum : int { kSlotPartial = 0, kSlotCsr, kSlotFlag, kSlotCount };
void* scratch_bytes(int slot, size_t bytes);

// Column sums of an [N, C] matrix of values val(n, c), added into out[C] (f32), in two
// fixed-order passes: partial sums over chunks of kRowsPerChunk rows (each a fixed tree inside
// its block), then the chunks in order. Used by the bias gradient and RMSNorm's weight gradient.
constexpr int kRowsPerChunk = 256;

template <class Val>
__global__ void column_partials(int64_t N, int64_t C, Val val, float* partial) {
  __shared__ float sh[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerChunk;
  const int64_t r1 = r0 + kRowsPerChunk < N ? r0 + kRowsPerChunk : N;
  float s = 0;
  if (c < C)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) s += val(r, c);
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0;
    for (int i = 0; i < 8; i++) t += sh[i][threadIdx.x];
    partial[int64_t(blockIdx.y) * C + c] = t;
  }
}

__global__ void column_finish(int64_t C, int64_t chunks, const float* partial, float* out);

template <class Val>
void column_sums(int64_t N, int64_t C, const Val& val, float* out) {
  if (N == 0 || C == 0) return;
  const int64_t chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  TOPK_CHECK(chunks < 65536, "ops: %lld rows are more than the column sums handle", (long long)N);
  float* partial = static_cast<float*>(scratch_bytes(kSlotPartial, size_t(chunks * C) * 4));
  column_partials<<<dim3(unsigned((C + 31) / 32), unsigned(chunks)), dim3(32, 8)>>>(N, C, val, partial);
  TOPK_CUDA_LAUNCH();
  column_finish<<<grid_for(C), 256>>>(C, chunks, partial, out);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
