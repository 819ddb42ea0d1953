// Shared helpers of the CUDA model ops: f32/bf16 element access one at a time or 8 at a time
// (16-byte loads), launch shapes, fixed-order reductions and device scratch. Every reduction here
// sums in one fixed order, so results are the same bits on every run (no float atomics).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_check.cuh"
#include "model/ops_impl.h"

namespace topk::ops::cuda {

// A float tensor as kernels see it: a pointer and whether it holds bf16 (else f32). The dtype is
// a flag rather than a template argument: the branch is uniform over a launch and costs nothing
// next to the memory traffic, and the kernels stay one instance each.
struct F {
  void* p;
  bool bf;
  __device__ __forceinline__ float get(int64_t i) const {
    return bf ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])
              : static_cast<const float*>(p)[i];
  }
  __device__ __forceinline__ void set(int64_t i, float v) const {
    if (bf) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    else static_cast<float*>(p)[i] = v;
  }
  // Elements i..i+7; i a multiple of 8 and p 16-byte aligned (checked by the launcher).
  __device__ __forceinline__ void get8(int64_t i, float (&v)[8]) const {
    if (bf) {
      const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(p) + i);
      const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
      for (int k = 0; k < 4; k++) {
        const float2 f = __bfloat1622float2(h[k]);
        v[2 * k] = f.x;
        v[2 * k + 1] = f.y;
      }
    } else {
      const float4* q = reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
      const float4 a = q[0], b = q[1];
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
      v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
  }
  __device__ __forceinline__ void set8(int64_t i, const float (&v)[8]) const {
    if (bf) {
      uint4 u;
      __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
      for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
      *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(p) + i) = u;
    } else {
      float4* q = reinterpret_cast<float4*>(static_cast<float*>(p) + i);
      q[0] = make_float4(v[0], v[1], v[2], v[3]);
      q[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
  }
};
// The stream every model op runs on: topk::cuda_stream() (nullptr, the legacy default stream,
// unless a caller set one with topk::set_cuda_stream).
inline cudaStream_t stream() { return static_cast<cudaStream_t>(::topk::cuda_stream()); }

inline F fview(const TensorView& t) { return F{t.data, t.dtype == DType::bf16}; }
inline F fview(float* p) { return F{p, false}; }

// W elements from i: W = 8 through 16-byte loads, W = 1 one at a time (unaligned tensors, rows
// whose length is not a multiple of 8). Kernels are templates over W; launchers pick it.
template <int W>
__device__ __forceinline__ void load(const F& t, int64_t i, float (&v)[W]) {
  if constexpr (W == 8) t.get8(i, v);
  else
#pragma unroll
    for (int k = 0; k < W; k++) v[k] = t.get(i + k);
}
template <int W>
__device__ __forceinline__ void store(const F& t, int64_t i, const float (&v)[W]) {
  if constexpr (W == 8) t.set8(i, v);
  else
#pragma unroll
    for (int k = 0; k < W; k++) t.set(i + k, v[k]);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
// True when every tensor's base is 16-byte aligned (absent ones, data == nullptr, pass) and the
// row length n is a multiple of 8, so that 8-element groups never straddle rows.
inline bool vec8(int64_t n, std::initializer_list<const void*> ps) {
  if (n % 8) return false;
  for (const void* p : ps)
    if (!aligned16(p)) return false;
  return true;
}

// Flat launches: 256-thread blocks over n items with a grid-stride loop, capped so that huge
// tensors do not launch millions of blocks.
inline unsigned grid_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : b > 65536 ? 65536 : b);
}
#define TOPK_FLAT_LOOP(i, n)                                                        \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// Flat maps over n elements: Op::run<W>(i) handles elements i..i+W-1, in 8-element groups (16-byte
// loads) when vec (every tensor aligned), then the tail one at a time.
template <class Op>
__global__ void map_kernel(int64_t n, bool vec, Op op) {
  const int64_t groups = vec ? n / 8 : 0;
  TOPK_FLAT_LOOP(g, groups) op.template run<8>(g * 8);
  TOPK_FLAT_LOOP(j, n - groups * 8) op.template run<1>(groups * 8 + j);
}
template <class Op>
void launch_map(int64_t n, bool vec, const Op& op) {
  if (n == 0) return;
  map_kernel<<<grid_for(vec ? n / 8 + 1 : n), 256, 0, stream()>>>(n, vec, op);
  TOPK_CUDA_LAUNCH();
}

// Row launches over [rows, packs]: x over a row's packs (W-element groups), y over rows with a
// grid-stride loop, so kernels index without 64-bit division. Up to 256 threads: whole warps
// across a row of 17..255 packs (768 f32 columns are 96 packs: 3 warps, 2 rows per block), a
// power of two when rows are shorter, so that a warp spans several rows (RoPE's 8 packs).
struct RowLaunch {
  dim3 grid, block;
};
inline RowLaunch row_launch(int64_t rows, int64_t packs) {
  int tx = 1;
  if (packs >= 256) tx = 256;
  else if (packs > 16) tx = int((packs + 31) / 32 * 32);
  else
    while (tx < packs) tx *= 2;
  const int ty = 256 / tx;
  const int64_t gx = (packs + tx - 1) / tx, gy = (rows + ty - 1) / ty;
  return {dim3(unsigned(gx < 1 ? 1 : gx), unsigned(gy < 1 ? 1 : gy > 65535 ? 65535 : gy)),
          dim3(unsigned(tx), unsigned(ty))};
}
#define TOPK_ROW_LOOP(n, N)                                                          \
  for (int64_t n = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; n < (N); \
       n += int64_t(gridDim.y) * blockDim.y)
// This thread's pack (x) of a row launch, as an element offset.
template <int W>
__device__ __forceinline__ int64_t pack_col() {
  return (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * W;
}

// Sum over a warp in a fixed butterfly order; every lane gets the same bits (a + b == b + a).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over a block of up to 1024 threads; every thread gets the result. sh: 32 floats.
__device__ __forceinline__ float block_sum(float v, float* sh) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // sh may still be read by an earlier call
  if (lane == 0) sh[w] = v;
  __syncthreads();
  return warp_sum(lane < nw ? sh[lane] : 0.0f);
}

// Device scratch that grows on demand, one buffer per purpose and device (not thread-safe, like
// the rest of the CUDA backend). Contents undefined; stream() orders its users.
enum : int { kSlotPartial = 0, kSlotCsr, kSlotFlag, kSlotCount };
void* scratch_bytes(int slot, size_t bytes);

// Column sums out[c] += sum_n val(n, c) over an [N, C] matrix of values, in two fixed-order
// passes: partial sums over chunks of kRowsPerChunk rows (thread (x, y) of a block adds rows
// y, y + 8, ... of its chunk in order, then y = 0..7 are added in order), then the chunks in
// order. The order depends only on N and C (W, 8 when aligned else 1, only groups columns).
// Val::load<W>(n, c, v) gives the values of columns c..c+W-1 of row n.
constexpr int kRowsPerChunk = 128;

template <int W, class Val>
__global__ void column_partials(int64_t N, int64_t C, Val val, float* partial) {
  // partial [chunks, C]
  __shared__ float sh[8][W][33];
  const int64_t c = (int64_t(blockIdx.x) * 32 + threadIdx.x) * W;
  const int64_t r0 = int64_t(blockIdx.y) * kRowsPerChunk;
  const int64_t r1 = r0 + kRowsPerChunk < N ? r0 + kRowsPerChunk : N;
  float s[W];
#pragma unroll
  for (int k = 0; k < W; k++) s[k] = 0;
  if (c < C)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      float v[W];
      val.template load<W>(r, c, v);
#pragma unroll
      for (int k = 0; k < W; k++) s[k] += v[k];
    }
#pragma unroll
  for (int k = 0; k < W; k++) sh[threadIdx.y][k][threadIdx.x] = s[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < C)
#pragma unroll
    for (int k = 0; k < W; k++) {
      float t = 0;
#pragma unroll
      for (int i = 0; i < 8; i++) t += sh[i][k][threadIdx.x];
      partial[int64_t(blockIdx.y) * C + c + k] = t;
    }
}

__global__ void column_finish(int64_t C, int64_t chunks, const float* partial, float* out);

template <class Val>
void column_sums(int64_t N, int64_t C, bool vec, const Val& val, float* out) {  // out [C]
  if (N == 0 || C == 0) return;
  const int64_t chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  TOPK_CHECK(chunks <= 65535, "ops: %lld rows are more than the column sums handle", (long long)N);
  float* partial = static_cast<float*>(scratch_bytes(kSlotPartial, size_t(chunks * C) * 4));
  const int W = vec ? 8 : 1;
  const dim3 grid(unsigned((C / W + 31) / 32), unsigned(chunks)), block(32, 8);
  if (vec) column_partials<8><<<grid, block, 0, stream()>>>(N, C, val, partial);
  else column_partials<1><<<grid, block, 0, stream()>>>(N, C, val, partial);
  TOPK_CUDA_LAUNCH();
  column_finish<<<grid_for(C), 256, 0, stream()>>>(C, chunks, partial, out);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
