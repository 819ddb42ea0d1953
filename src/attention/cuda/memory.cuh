// Memory access of the CUDA attention kernels: one element or 8 at a time of any float dtype
// (16-byte loads, conversions), gathers of selected V rows, asynchronous global -> shared
// copies with L2 policies.
#pragma once
#include "attention/cuda/common.cuh"
#include "core/fp8.h"

namespace topk::cuda {

__device__ __forceinline__ float load1(const char* base, int dt, int64_t i) {
  if (dt == kF32) return reinterpret_cast<const float*>(base)[i];
  if (dt == kF8) return fp8e4m3_to_f32(reinterpret_cast<const uint8_t*>(base)[i]);
  uint16_t h = reinterpret_cast<const uint16_t*>(base)[i];
  if (dt == kBF16) return __uint_as_float(uint32_t(h) << 16);
  return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ void store1(void* base, int dt, int64_t i, float x) {
  if (dt == kF32) reinterpret_cast<float*>(base)[i] = x;
  else if (dt == kBF16) reinterpret_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(x);
  else reinterpret_cast<__half*>(base)[i] = __float2half_rn(x);
}

// 16 raw bytes of the 8-element group at element offset `off` of r: part 0 for 16-bit dtypes;
// parts 0 and 1 (elements 0-3, 4-7) for f32. vec: 16-byte aligned rows (else scalar loads).
__device__ __forceinline__ uint4 ldg16(const void* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ uint4 load_part(const DRows& r, int64_t off, int part, bool vec) {
  const char* p = r.data + off * r.esize + part * 16;
  if (vec) return ldg16(p);
  if (r.dt == kF32) {
    const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
    return make_uint4(q[0], q[1], q[2], q[3]);
  }
  const uint16_t* q = reinterpret_cast<const uint16_t*>(p);
  return make_uint4(q[0] | (uint32_t(q[1]) << 16), q[2] | (uint32_t(q[3]) << 16),
                    q[4] | (uint32_t(q[5]) << 16), q[6] | (uint32_t(q[7]) << 16));
}

__device__ __forceinline__ void cvt2(uint32_t w, int dt, float& lo, float& hi) {
  if (dt == kBF16) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
  } else {
    float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w));
    lo = f.x;
    hi = f.y;
  }
}

// 8 elements of a 16-bit dtype.
__device__ __forceinline__ void cvt8(const uint4& x, int dt, float (&f)[8]) {
  cvt2(x.x, dt, f[0], f[1]);
  cvt2(x.y, dt, f[2], f[3]);
  cvt2(x.z, dt, f[4], f[5]);
  cvt2(x.w, dt, f[6], f[7]);
}
// 8 elements of f32 from its two parts.
__device__ __forceinline__ void cvt8(const uint4& x, const uint4& y, float (&f)[8]) {
  f[0] = __uint_as_float(x.x); f[1] = __uint_as_float(x.y);
  f[2] = __uint_as_float(x.z); f[3] = __uint_as_float(x.w);
  f[4] = __uint_as_float(y.x); f[5] = __uint_as_float(y.y);
  f[6] = __uint_as_float(y.z); f[7] = __uint_as_float(y.w);
}

// acc[e] += w[i] * V[idx[i]][8 g + e] over i = first + u * step (u < U, i < n) for aligned
// bf16 V rows (elements vbase + idx * st): the common case of the sparse gathers, without the
// other dtypes' code and with 32-bit positions; all U loads in flight before the first use.
template <int U>
__device__ __forceinline__ void gather_bf16(const char* v, int64_t vbase, int64_t st, int g,
                                            const int32_t* idx, const float* w, int first,
                                            int step, int n, float (&acc)[8]) {
  uint4 raw[U];
#pragma unroll
  for (int u = 0; u < U; u++) {
    const int i = first + u * step;
    raw[u] = i < n ? ldg16(v + (vbase + int64_t(idx[i]) * st + g * 8) * 2) : make_uint4(0, 0, 0, 0);
  }
#pragma unroll
  for (int u = 0; u < U; u++) {
    const int i = first + u * step;
    const float wi = i < n ? w[i] : 0.f;
    const uint32_t wd[4] = {raw[u].x, raw[u].y, raw[u].z, raw[u].w};
#pragma unroll
    for (int e = 0; e < 4; e++) {
      acc[2 * e] = fmaf(wi, __uint_as_float(wd[e] << 16), acc[2 * e]);
      acc[2 * e + 1] = fmaf(wi, __uint_as_float(wd[e] & 0xffff0000u), acc[2 * e + 1]);
    }
  }
}

// Loads U groups of 8 elements (offsets off[u], valid[u]) and calls f(u, vals) for each;
// all loads of a batch are issued before the first use. f32 runs in two batches of U/2 so
// that the raw registers stay at U x 16 bytes for every dtype.
template <int U, class F>
__device__ __forceinline__ void load_groups(const DRows& r, const int64_t (&off)[U],
                                            const bool (&valid)[U], bool vec, F&& f) {
  if (r.dt != kF32) {
    uint4 raw[U];
#pragma unroll
    for (int u = 0; u < U; u++) raw[u] = valid[u] ? load_part(r, off[u], 0, vec) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < U; u++) {
      float x[8];
      cvt8(raw[u], r.dt, x);
      f(u, x);
    }
  } else {
#pragma unroll
    for (int h = 0; h < 2; h++) {
      constexpr int H = U / 2 > 0 ? U / 2 : 1;
      uint4 raw[2 * H];
#pragma unroll
      for (int i = 0; i < H; i++) {
        int u = h * H + i;
        if (u < U) {
          raw[2 * i] = valid[u] ? load_part(r, off[u], 0, vec) : make_uint4(0, 0, 0, 0);
          raw[2 * i + 1] = valid[u] ? load_part(r, off[u], 1, vec) : make_uint4(0, 0, 0, 0);
        }
      }
#pragma unroll
      for (int i = 0; i < H; i++) {
        int u = h * H + i;
        if (u < U) {
          float x[8];
          cvt8(raw[2 * i], raw[2 * i + 1], x);
          f(u, x);
        }
      }
    }
  }
}

// acc[e] += weight_at(i) * V[index_at(i)][8 g + e] over i = first + u * step (u < U, i < n),
// for V rows of any dtype (elements vbase + index * st): the general case of the sparse
// gathers, where gather_bf16 does not apply. Index type I is int or int64_t, as the caller
// counts its rows.
template <int U, class I, class IndexAt, class WeightAt>
__device__ __forceinline__ void gather_rows(const DRows& v, int64_t vbase, int g, bool vec, I first,
                                            I step, I n, IndexAt&& index_at, WeightAt&& weight_at,
                                            float (&acc)[8]) {
  int64_t off[U];
  bool valid[U];
#pragma unroll
  for (int u = 0; u < U; u++) {
    const I i = first + u * step;
    valid[u] = i < n;
    off[u] = vbase + int64_t(valid[u] ? index_at(i) : 0) * v.st + g * 8;
  }
  // The weights are computed while the V rows are on their way.
  load_groups<U>(v, off, valid, vec, [&](int u, const float (&x)[8]) {
    const I i = first + u * step;
    const float w = valid[u] ? weight_at(i) : 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = fmaf(w, x[e], acc[e]);
  });
}

__host__ __device__ constexpr int ilog2(int x) { return x <= 1 ? 0 : 1 + ilog2(x / 2); }

// Asynchronous 16-byte global -> shared copies (cp.async, bypassing L1) and their groups.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
// 8 or 4 bytes, asynchronously (cached in L1): small per-row values that travel with their
// rows' tile (a row's lse and delta, a key's scale).
__device__ __forceinline__ void cp_async8(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// An L2 policy that evicts first what it is given to: for data read once (K in the score
// pass), so that the stream does not push out of L2 what is read again soon (the score rows
// and the chosen V rows of top-k decode).
__device__ __forceinline__ uint64_t l2_evict_first() {
  uint64_t p;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
  return p;
}
__device__ __forceinline__ void cp_async16_policy(void* smem, const void* gmem, uint64_t policy) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem),
               "l"(policy) : "memory");
}

// 16 bytes from global to shared memory: asynchronous when the source is 16-byte aligned
// (vec), else element by element (esize bytes each, synchronous). policy: an L2 cache policy,
// or 0 for none.
__device__ __forceinline__ void copy16(void* smem, const char* gmem, bool vec, int esize,
                                       uint64_t policy = 0) {
  if (vec) {
    if (policy) cp_async16_policy(smem, gmem, policy);
    else cp_async16(smem, gmem);
  } else if (esize == 4) {
    for (int i = 0; i < 4; i++)
      reinterpret_cast<uint32_t*>(smem)[i] = reinterpret_cast<const uint32_t*>(gmem)[i];
  } else {
    for (int i = 0; i < 8; i++)
      reinterpret_cast<uint16_t*>(smem)[i] = reinterpret_cast<const uint16_t*>(gmem)[i];
  }
}

// 8 elements of dtype dt starting at p (shared memory, 16-byte aligned) as fp32.
__device__ __forceinline__ void load8_shared(const unsigned char* p, int dt, float (&x)[8]) {
  if (dt == kF32) {
    cvt8(*reinterpret_cast<const uint4*>(p), *reinterpret_cast<const uint4*>(p + 16), x);
  } else {
    cvt8(*reinterpret_cast<const uint4*>(p), dt, x);
  }
}

}  // namespace topk::cuda
