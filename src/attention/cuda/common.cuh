// Shared device helpers of the CUDA attention kernels: sequence table, loads of 8 elements
// of any float dtype, order-preserving score keys, block scans, and the host-side context
// (cached sequence upload, workspace, SM count). Kernels of one op live in its own .cu file.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/params.h"
#include "core/cuda_check.cuh"

namespace topk::cuda {

// Dtype codes as kernels see them.
enum : int { kF32 = 0, kBF16 = 1, kF16 = 2 };
inline int dt_code(DType t) { return t == DType::f32 ? kF32 : t == DType::bf16 ? kBF16 : kF16; }

// One sequence as kernels see it: SeqDesc plus r0, its first compact query row (the prefix
// sum of T over the sequences before it). Compact rows number the queries of a call 0..R-1.
struct DSeq {
  int32_t batch, q_start, T, k_start, S, q_pos, r0;
};

// A [B, rows, H, D] tensor (unit stride over D), strides in elements.
struct DRows {
  const char* data;
  int dt, esize;
  int64_t sb, st, sh;
  __host__ __device__ int64_t offset(int64_t b, int64_t row, int64_t h) const {
    return b * sb + row * st + h * sh;
  }
};

inline DRows drows(const Rows& r) {
  DRows d;
  d.data = static_cast<const char*>(r.data);
  d.dt = dt_code(r.dtype);
  d.esize = r.dtype == DType::f32 ? 4 : 2;
  d.sb = r.sb;
  d.st = r.st;
  d.sh = r.sh;
  return d;
}

// Where an attention op writes o ([B, Tq, Hq, D] strides in elements, any float dtype) and
// lse ([rows, Hq]).
struct DOut {
  void* o;
  int dt;
  int64_t sb, st, sh;
  float* lse;
  __host__ __device__ int64_t offset(int64_t b, int64_t row, int64_t h) const {
    return b * sb + row * st + h * sh;
  }
};

inline DOut dout(const AttnParams& p) {
  return DOut{p.o_data, dt_code(p.o.dtype), p.o.sb, p.o.st, p.o.sh, p.lse};
}

// 16-byte loads need 16-byte aligned rows: base and every stride.
inline bool rows_aligned(const DRows& r) {
  auto ok = [&](int64_t s) { return (s * r.esize) % 16 == 0; };
  return (reinterpret_cast<uintptr_t>(r.data) % 16) == 0 && ok(r.sb) && ok(r.st) && ok(r.sh);
}

// Uploaded sequence table of a call.
struct SeqTable {
  const DSeq* d = nullptr;
  int n = 0;
  int64_t rows = 0;   // R = sum of T
  int64_t max_T = 0;  // largest T
};

// Uploads the sequence table (skipped when it equals the last one uploaded).
SeqTable upload_seqs(const AttnParams& p);
// A cached device buffer per slot, grown as needed (never shrinks); contents undefined.
void* workspace(int slot, size_t bytes);
enum : int {
  kWsScores = 0, kWsRank, kWsPartial, kWsLse,
  kWsThr, kWsCand, kWsSelScores,  // threshold path of top-k attention
  kWsLD, kWsDout,                 // backward: (lse, Delta) per row and head, dout as 16-bit
  kWsEntry, kWsSort, kWsSortTemp, kWsRuns,  // sparse backward: per-entry P and dS, the key
                                             // sort, the runs of the sorted keys
  kWsCount
};

// A small host table (tile lists) in device memory, cached per slot like the sequence table:
// re-sent only when its bytes change, so that a training step's layers pay no copy (a copy
// from pageable memory waits for the stream).
const void* upload_table(int slot, const void* host, size_t bytes);
enum : int { kTabFlashQ = 0, kTabFlashK, kTabIndexer, kTabCount };

int num_sms();
cudaStream_t stream();  // the stream all ops run on: topk::cuda_stream() (default: legacy)

// Compact row -> sequence index (binary search on r0).
__device__ __forceinline__ int seq_of_row(const DSeq* seqs, int nseq, int64_t r) {
  int lo = 0, hi = nseq - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (seqs[mid].r0 <= r) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ int64_t visible_keys(const DSeq& s, int64_t t, bool causal) {
  if (!causal) return s.S;
  int64_t n = int64_t(s.q_pos) + t + 1;
  return n < 0 ? 0 : (n > s.S ? s.S : n);
}

__device__ __forceinline__ float load1(const char* base, int dt, int64_t i) {
  if (dt == kF32) return reinterpret_cast<const float*>(base)[i];
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

// Tensor cores: four 8x8 b16 matrices from shared memory (lane l gives the address of row
// l % 8 of matrix l / 8), and D += A B for a 16x16 bf16 A (row-major) and 16x8 B (col-major).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
// The same four matrices transposed: lane l gives row l % 8 of matrix l / 8 as stored, and
// receives the fragment of its transpose (B-style data used as an A operand).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Splits x into parts bf16 values whose sum is x to 8 * parts significant bits (exact for
// bf16 x with 1 part, f16 with 2, f32 with 3): tensor-core products of bf16 K with each part
// are exact, so the dot product keeps the precision of q.
__device__ __forceinline__ void split_bf16(float x, int parts, uint16_t (&out)[3]) {
#pragma unroll
  for (int i = 0; i < 3; i++) {
    const __nv_bfloat16 h = __float2bfloat16_rn(i < parts ? x : 0.f);
    out[i] = __bfloat16_as_ushort(h);
    x -= __bfloat162float(h);
  }
}

// q of one query row as the B fragments (dims x 8 head columns) of D / 16 mma k-steps, one
// set per bf16 part: lane l holds head h0 + l / 4 (zero past nh), dims 16 ks + 2 (l % 4) +
// {0, 1} and the same + 8. qo0: the element offset of the row's head h0.
template <int D>
__device__ __forceinline__ void load_q_frags(const DRows& q, int64_t qo0, int nh, int parts,
                                             uint32_t (&qb)[3][D / 16][2]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t2 = (lane & 3) * 2;
  const int64_t qo = qo0 + (g < nh ? g : 0) * q.sh;
  // Every load of the lane first, under one dtype branch: a load per element next to its
  // split made each wait for the one before (a chain of global latencies per call).
  float x[D / 16][4];
  auto gather = [&](auto conv) {
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)
#pragma unroll
      for (int e = 0; e < 4; e++) x[ks][e] = conv(qo + 16 * ks + t2 + 8 * (e >> 1) + (e & 1));
  };
  if (q.dt == kBF16) {
    const __nv_bfloat16* p = reinterpret_cast<const __nv_bfloat16*>(q.data);
    gather([&](int64_t i) { return __bfloat162float(p[i]); });
  } else if (q.dt == kF16) {
    const __half* p = reinterpret_cast<const __half*>(q.data);
    gather([&](int64_t i) { return __half2float(p[i]); });
  } else {
    const float* p = reinterpret_cast<const float*>(q.data);
    gather([&](int64_t i) { return p[i]; });
  }
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
#pragma unroll
    for (int j = 0; j < 2; j++) {
      uint16_t lo[3], hi[3];
      split_bf16(g < nh ? x[ks][2 * j] : 0.f, parts, lo);
      split_bf16(g < nh ? x[ks][2 * j + 1] : 0.f, parts, hi);
#pragma unroll
      for (int p = 0; p < 3; p++) qb[p][ks][j] = uint32_t(lo[p]) | (uint32_t(hi[p]) << 16);
    }
  }
}

// Tensor-core tiles keep bf16 rows of D elements unpadded in shared memory, with 16-byte chunk
// c of row r stored at chunk c ^ (r % 8): ldmatrix over 8 consecutive rows then hits 8
// different bank groups. (Padding each row by 16 bytes does the same for ldmatrix, but it
// splits cp.async's writes of a 128-byte line over two shared-memory segments, and the H100
// then requests every line from L2 one and a half times: 5% of the read bandwidth.)
__device__ __forceinline__ int swizzled_chunk(int row, int chunk) { return chunk ^ (row & 7); }

// Dot products of 16 bf16 key rows (a swizzled tile, rows 2 D bytes apart, starting at a row
// that is a multiple of 8) with the 8 head columns of qb: c = C[key][head] fragments, lane l
// holding keys l / 4 and l / 4 + 8, heads 2 (l % 4) and + 1.
template <int D>
__device__ __forceinline__ void slab_scores(const unsigned char* rows,
                                            const uint32_t (&qb)[3][D / 16][2], int parts,
                                            float (&c)[4]) {
  const int lane = threadIdx.x & 31;
  const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
  const unsigned char* arow = rows + row * (2 * D);
#pragma unroll
  for (int e = 0; e < 4; e++) c[e] = 0.f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    uint32_t af[4];
    ldmatrix_x4(af, arow + swizzled_chunk(row, 2 * ks + (lane >> 4)) * 16);
#pragma unroll
    for (int p = 0; p < 3; p++)
      if (p < parts) mma_bf16(c, af, qb[p][ks][0], qb[p][ks][1]);
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

// Launches kernel on stream() through cudaLaunchKernelEx: as clusters of `cluster` blocks
// along x when cluster > 0, and with pdl as a programmatic dependent of the kernel before it
// (it may start before that one ends, and must wait for what it reads).
template <class... P, class... A>
void launch_ex(void (*kernel)(P...), int64_t grid, int threads, size_t smem, int cluster, bool pdl,
               const A&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(grid));
  cfg.blockDim = dim3(unsigned(threads));
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream();
  cudaLaunchAttribute attrs[2];
  int n = 0;
  if (pdl) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n].val.programmaticStreamSerializationAllowed = 1;
    n++;
  }
  if (cluster > 0) {
    attrs[n].id = cudaLaunchAttributeClusterDimension;
    attrs[n].val.clusterDim.x = unsigned(cluster);
    attrs[n].val.clusterDim.y = 1;
    attrs[n].val.clusterDim.z = 1;
    n++;
  }
  cfg.attrs = attrs;
  cfg.numAttrs = unsigned(n);
  TOPK_CUDA(cudaLaunchKernelEx(&cfg, kernel, args...));
  TOPK_CUDA_LAUNCH();
}

// Keys of a work unit are split into chunks of this many (multiples of the kernels' tiles).
constexpr int kTile = 128;

// Number of splits of an item's keys so that items * splits blocks fill whole waves.
int choose_splits(int64_t items, int64_t keys, int blocks_per_sm, int max_splits);

}  // namespace topk::cuda

// Dispatch on the compile-time head dim; anything else is a caller error.
#define TOPK_CUDA_HEAD_DIM_SWITCH(D, op, ...)                                               \
  switch (D) {                                                                               \
    case 64: { constexpr int kD = 64; __VA_ARGS__; break; }                                  \
    case 128: { constexpr int kD = 128; __VA_ARGS__; break; }                                \
    default: throw ::topk::Error(::topk::detail::format_error(                               \
        "%s: unsupported head dim %d on CUDA (64 and 128 are built)", op, int(D)));          \
  }
