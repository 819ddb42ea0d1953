// Lightning Indexer scores on CUDA: I(t, s) = sum_j w_j ReLU(qi_j . ki_s) for every visible key
// of each query row, -inf past them ([B, Tq, 1, Smax]).
//
// Tensor-core path (bf16 qi and ki, dI 64 or 128, HI <= 64, 16-byte aligned rows): a block per
// (query row, chunk of keys: as few chunks as fill the GPU in whole waves), 4 warps. The block
// stages the row's queries in shared memory, each warp takes them as B fragments for every
// group of 8 heads, then streams 16-key slabs of ki through its own 3-stage cp.async ring
// (swizzled rows, common.cuh), in the same memory, and multiplies them with the queries (keys x
// dims times dims x heads, slab_scores_heads: each key fragment is loaded from shared memory
// once for all groups); the ReLU, the weights and the sum over heads follow in registers, then
// over the 4 lanes that share a key. Every key is read once per query row: decode (T = 1) reads
// the indexer cache once. FP8 keys (any float qi) take ix_scores_mma_fp8, the same on f16 tensor
// cores. Other shapes and dtypes: an FMA kernel (a block per row and 128 keys, the key tile
// converted to fp32 in shared memory, a thread per key). Each score is written by one thread
// after a fixed-order sum: deterministic.
// On compute capability 9.0 the same blocks can run on warpgroup tensor cores (ix_scores_wgmma),
// but only when TOPK_CUDA_INDEXER_PATH=wgmma asks: on an H100 they took 109.4 us for the B = 8,
// S = 128K scores against the mma.sync kernel's 102.1 (docs/benchmarks.md).
// TOPK_CUDA_INDEXER_PATH=wgmma|mma|simple forces one path (the tests run each).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include <cuda_fp8.h>

#include "attention/approx.h"
#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "core/fp8.h"

namespace topk::cuda {

namespace {

struct IxArgs {
  const DSeq* seqs;
  int nseq;
  int HI, dI;
  int64_t Smax, Tq, chunk, nchunks;
  bool causal;
  DRows q, k;
  const float* w;  // [B, Tq, HI]
  float* out;      // [B, Tq, 1, Smax]
  const float* kscale;  // FP8 keys: key j of batch b has scale kscale[b * kscale_sb + j]
  int64_t kscale_sb;
};

constexpr int kWarps = 4;
constexpr int kStages = 3;
constexpr int kSimpleKeys = 128;   // keys per block of the FMA path

// The row's query position, visible keys and output row; -inf written past the visible keys of
// [j0, j1). Returns the end of the visible part of the chunk.
__device__ __forceinline__ int64_t row_setup(const IxArgs& a, int64_t r, int64_t j0, int64_t j1,
                                             DSeq& s, int64_t& t, float*& out) {
  s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  t = r - s.r0;
  const int64_t n = visible_keys(s, t, a.causal);
  out = a.out + (int64_t(s.batch) * a.Tq + s.q_start + t) * a.Smax;
  for (int64_t j = (j0 > n ? j0 : n) + threadIdx.x; j < j1; j += blockDim.x) out[j] = -INFINITY;
  return j1 < n ? j1 : n;
}

template <int D, int HG>
__global__ void __launch_bounds__(kWarps * 32) ix_scores_mma(const IxArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];  // [kWarps][kStages][16 rows][2 D bytes]
  const int64_t r = blockIdx.x / a.nchunks, j0 = (blockIdx.x % a.nchunks) * a.chunk;
  const int64_t j1 = j0 + a.chunk < a.Smax ? j0 + a.chunk : a.Smax;
  DSeq s;
  int64_t t;
  float* out;
  const int64_t jv = row_setup(a, r, j0, j1, s, t, out);
  if (j0 >= jv) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  // The row's queries, staged in shared memory by the whole block in 16-byte copies (once per
  // block, not a scalar gather per warp), then taken as B fragments, 8 heads per group (zero
  // past HI): head 8 hg + g, dims 16 ks + 2 tq + {0, 1} and the same + 8. The ring reuses the
  // memory after.
  constexpr int QP = D + 8;  // halves between staged rows: the fragment reads hit distinct banks
  static_assert(8 * HG * QP * 2 <= kWarps * kStages * 16 * 2 * D, "staged queries must fit the ring");
  uint16_t* qs = reinterpret_cast<uint16_t*>(smem);  // [HI][QP]
  const int64_t qo = a.q.offset(s.batch, s.q_start + t, 0);
  for (int c = threadIdx.x; c < a.HI * (D / 8); c += blockDim.x) {
    const int h = c / (D / 8), ch = c % (D / 8);
    *reinterpret_cast<uint4*>(qs + h * QP + ch * 8) =
        *reinterpret_cast<const uint4*>(a.q.data + (qo + int64_t(h) * a.q.sh + ch * 8) * 2);
  }
  __syncthreads();
  uint32_t qb[HG][D / 16][2];
#pragma unroll
  for (int hg = 0; hg < HG; hg++) {
    const int h = 8 * hg + g;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)
#pragma unroll
      for (int j = 0; j < 2; j++)
        qb[hg][ks][j] = h < a.HI ? *reinterpret_cast<const uint32_t*>(qs + h * QP + 16 * ks + 2 * tq + 8 * j) : 0u;
  }
  __syncthreads();  // every warp has its fragments before the ring overwrites them
  float w0[HG], w1[HG];  // the weights of heads 8 hg + 2 tq + {0, 1}, the accumulators' columns
  const float* wr = a.w + (int64_t(s.batch) * a.Tq + s.q_start + t) * a.HI;
#pragma unroll
  for (int hg = 0; hg < HG; hg++) {
    const int h = 8 * hg + 2 * tq;
    w0[hg] = h < a.HI ? wr[h] : 0.f;
    w1[hg] = h + 1 < a.HI ? wr[h + 1] : 0.f;
  }
  constexpr int kSlabBytes = 16 * 2 * D;
  unsigned char* ring = smem + warp * kStages * kSlabBytes;
  const int64_t nslab = (jv - j0 + 15) / 16;
  // Slab i of this warp is slab warp + i * kWarps of the chunk.
  auto issue = [&](int64_t i) {
    const int64_t sl = warp + i * kWarps;
    if (sl < nslab) {
      unsigned char* dst = ring + (i % kStages) * kSlabBytes;
      for (int c = lane; c < 16 * (D / 8); c += 32) {
        const int row = c / (D / 8), ch = c % (D / 8);
        const int64_t j = j0 + sl * 16 + row;
        unsigned char* d = dst + row * 2 * D + swizzled_chunk(row, ch) * 16;
        if (j < jv)
          cp_async16(d, a.k.data + (a.k.offset(s.batch, s.k_start + j, 0) + ch * 8) * 2);
        else
          *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
      }
    }
    cp_async_commit();  // an empty group past the end keeps the wait counts uniform
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; i++) issue(i);
  for (int64_t i = 0; warp + i * kWarps < nslab; i++) {
    cp_async_wait<kStages - 2>();
    __syncwarp();
    const unsigned char* rows = ring + (i % kStages) * kSlabBytes;
    float c[HG][4];
    slab_scores_heads<D, HG>(rows, qb, c);
    float acc0 = 0.f, acc1 = 0.f;  // keys g and g + 8
#pragma unroll
    for (int hg = 0; hg < HG; hg++) {
      acc0 = fmaf(w0[hg], fmaxf(c[hg][0], 0.f), fmaf(w1[hg], fmaxf(c[hg][1], 0.f), acc0));
      acc1 = fmaf(w0[hg], fmaxf(c[hg][2], 0.f), fmaf(w1[hg], fmaxf(c[hg][3], 0.f), acc1));
    }
    acc0 += __shfl_xor_sync(0xffffffffu, acc0, 1);
    acc0 += __shfl_xor_sync(0xffffffffu, acc0, 2);
    acc1 += __shfl_xor_sync(0xffffffffu, acc1, 1);
    acc1 += __shfl_xor_sync(0xffffffffu, acc1, 2);
    if (tq == 0) {
      const int64_t j = j0 + (warp + i * kWarps) * 16 + g;
      if (j < jv) out[j] = acc0;
      if (j + 8 < jv) out[j + 8] = acc1;
    }
    __syncwarp();  // every lane is done with the stage that the next issue refills
    issue(i + kStages - 1);
  }
  cp_async_wait<0>();
}

// Two E4M3 bytes (the low one first) as two f16 (the low half first), exactly: every E4M3 value,
// subnormals and NaN included, is an f16 (one instruction from sm_89 on).
__device__ __forceinline__ uint32_t e4m3x2_as_f16x2(uint16_t two) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(two, __NV_E4M3);
  return uint32_t(h.x) | (uint32_t(h.y) << 16);
}

template <int D>
constexpr int fp8_slab_pitch() {  // bytes between slab rows: conflict-free 16-byte lane loads
  return D == 64 ? 64 : D + 16;
}
template <int D>
constexpr int fp8_slab_bytes() {  // a slab's 16 key rows, then their 16 scales
  return 16 * fp8_slab_pitch<D>() + 16 * 4;
}
template <int D, int HG>
constexpr int fp8_staged_q_bytes() {  // f16 query rows of 8 HG heads, D + 8 halves apart
  return 8 * HG * (D + 8) * 2;
}
template <int D, int HG>
constexpr size_t fp8_smem_bytes() {  // the ring, or the staged queries and their raw copy (<= f32)
  const size_t ring = size_t(kWarps) * kStages * fp8_slab_bytes<D>();
  const size_t q = size_t(fp8_staged_q_bytes<D, HG>()) + size_t(8) * HG * D * 4;
  return ring > q ? ring : q;
}

// FP8 keys on tensor cores: the same blocks, warps and 16-key slabs as ix_scores_mma, each key
// pair turned into f16 by the hardware conversion (exact: every E4M3 value is an f16) and
// multiplied on f16 tensor cores with the row's queries times 2^shift, a power of two that puts
// the row's largest |q| in [2^13, 2^14) so that f16 holds them (bf16 queries exactly, f32 ones
// to 11 bits); the ReLU sum over heads then takes 2^-shift times the key's scale, positive,
// outside the ReLU.
//
// A dot product may take its dims in any order, so lane (g, t) of a warp takes dims
// [t D/4, (t + 1) D/4) of its key rows g and g + 8 at fragment positions {2t, 2t + 1, 2t + 8,
// 2t + 9} of the D/16 k-steps (4 dims a step), and its queries in the same order: a lane reads
// its bytes of a slab with D/64 16-byte loads per row instead of a 2-byte load per pair, and its
// queries as 8-byte words. The block first stages the row's queries in shared memory as scaled
// f16 (one coalesced read of the row for the whole block instead of two scalar gathers per
// warp), then the ring reuses that memory.
template <int D, int HG>
__global__ void __launch_bounds__(kWarps * 32) ix_scores_mma_fp8(const IxArgs a) {
  constexpr int P = fp8_slab_pitch<D>();
  constexpr int QP = D + 8;  // halves between staged query rows
  constexpr int kSlabBytes = fp8_slab_bytes<D>();
  // [kWarps][kStages][16 key rows of P bytes, then their 16 scales], or before the ring starts,
  // the staged queries (fp8_smem_bytes)
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float warp_amax[kWarps];
  const int64_t r = blockIdx.x / a.nchunks, j0 = (blockIdx.x % a.nchunks) * a.chunk;
  const int64_t j1 = j0 + a.chunk < a.Smax ? j0 + a.chunk : a.Smax;
  DSeq s;
  int64_t t;
  float* out;
  const int64_t jv = row_setup(a, r, j0, j1, s, t, out);
  if (j0 >= jv) return;  // the whole block returns: no barrier below is left waiting
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;

  // Stage the queries: the row copied as it is after the f16 rows (16-byte copies of any float
  // dtype, all in flight at once: a scalar gather here cost a global latency per element), its
  // largest magnitude, then its values times 2^shift as f16.
  __half* qs = reinterpret_cast<__half*>(smem);  // [HI][QP]
  char* raw = reinterpret_cast<char*>(smem) + fp8_staged_q_bytes<D, HG>();  // [HI][D], q's dtype
  const int rb = D * a.q.esize;  // bytes of a head's raw row, a multiple of 16 (rows_aligned)
  const int64_t qo = a.q.offset(s.batch, s.q_start + t, 0);
  for (int c = threadIdx.x; c < a.HI * (rb / 16); c += blockDim.x) {
    const int h = c / (rb / 16), ch = c % (rb / 16);
    *reinterpret_cast<uint4*>(raw + h * rb + ch * 16) = *reinterpret_cast<const uint4*>(
        a.q.data + (qo + int64_t(h) * a.q.sh) * a.q.esize + ch * 16);
  }
  __syncthreads();
  const int nq = a.HI * D;
  float amax = 0.f;
  for (int i = threadIdx.x; i < nq; i += blockDim.x) amax = fmaxf(amax, fabsf(load1(raw, a.q.dt, i)));
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (lane == 0) warp_amax[warp] = amax;
  __syncthreads();
  amax = fmaxf(fmaxf(warp_amax[0], warp_amax[1]), fmaxf(warp_amax[2], warp_amax[3]));
  // amax < 2^ex from its exponent field (frexpf's out-argument put a word on the stack)
  const int ex = ((__float_as_int(amax) >> 23) & 0xff) - 126;
  const int shift = amax > 0.f ? 14 - ex : 0;
  for (int i = threadIdx.x; i < nq; i += blockDim.x)
    qs[(i / D) * QP + i % D] = __float2half_rn(ldexpf(load1(raw, a.q.dt, i), shift));
  __syncthreads();
  uint32_t qb[HG][D / 16][2];  // head 8 hg + g, dims t D/4 + 4 ks + {0, 1} and {2, 3}
#pragma unroll
  for (int hg = 0; hg < HG; hg++) {
    const int h = 8 * hg + g;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
      const uint2 v = h < a.HI ? *reinterpret_cast<const uint2*>(qs + h * QP + tq * (D / 4) + 4 * ks)
                               : make_uint2(0, 0);
      qb[hg][ks][0] = v.x;
      qb[hg][ks][1] = v.y;
    }
  }
  __syncthreads();  // every warp has its fragments before the ring overwrites them

  float w0[HG], w1[HG];  // the weights of heads 8 hg + 2 tq + {0, 1}, the accumulators' columns
  const float* wr = a.w + (int64_t(s.batch) * a.Tq + s.q_start + t) * a.HI;
#pragma unroll
  for (int hg = 0; hg < HG; hg++) {
    const int h = 8 * hg + 2 * tq;
    w0[hg] = h < a.HI ? wr[h] : 0.f;
    w1[hg] = h + 1 < a.HI ? wr[h + 1] : 0.f;
  }
  unsigned char* ring = smem + warp * kStages * kSlabBytes;
  const int64_t nslab = (jv - j0 + 15) / 16;
  const float* kscale = a.kscale + int64_t(s.batch) * a.kscale_sb + s.k_start;
  auto issue = [&](int64_t i) {
    const int64_t sl = warp + i * kWarps;
    if (sl < nslab) {
      unsigned char* dst = ring + (i % kStages) * kSlabBytes;
      if (lane < 16) {  // the keys' scales travel with them: no load waits after the products
        const int64_t j = j0 + sl * 16 + lane;
        float* d = reinterpret_cast<float*>(dst + 16 * P) + lane;
        if (j < jv)
          cp_async4(d, kscale + j);
        else
          *d = 0.f;
      }
      for (int c = lane; c < 16 * (D / 16); c += 32) {
        const int row = c / (D / 16), ch = c % (D / 16);
        const int64_t j = j0 + sl * 16 + row;
        unsigned char* d = dst + row * P + ch * 16;
        if (j < jv)
          cp_async16(d, a.k.data + a.k.offset(s.batch, s.k_start + j, 0) + ch * 16);
        else
          *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
      }
    }
    cp_async_commit();  // an empty group past the end keeps the wait counts uniform
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; i++) issue(i);
  for (int64_t i = 0; warp + i * kWarps < nslab; i++) {
    cp_async_wait<kStages - 2>();
    __syncwarp();
    const unsigned char* slab = ring + (i % kStages) * kSlabBytes;
    const unsigned char* rows = slab + tq * (D / 4);
    uint32_t lo[D / 16], hi[D / 16];  // rows g and g + 8: 4 bytes (4 dims) per k-step
#pragma unroll
    for (int v = 0; v < D / 64; v++) {
      const uint4 x = *reinterpret_cast<const uint4*>(rows + g * P + 16 * v);
      const uint4 y = *reinterpret_cast<const uint4*>(rows + (g + 8) * P + 16 * v);
      lo[4 * v] = x.x, lo[4 * v + 1] = x.y, lo[4 * v + 2] = x.z, lo[4 * v + 3] = x.w;
      hi[4 * v] = y.x, hi[4 * v + 1] = y.y, hi[4 * v + 2] = y.z, hi[4 * v + 3] = y.w;
    }
    float c[HG][4];
#pragma unroll
    for (int hg = 0; hg < HG; hg++)
#pragma unroll
      for (int e = 0; e < 4; e++) c[hg][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
      uint32_t af[4];
      af[0] = e4m3x2_as_f16x2(uint16_t(lo[ks]));
      af[1] = e4m3x2_as_f16x2(uint16_t(hi[ks]));
      af[2] = e4m3x2_as_f16x2(uint16_t(lo[ks] >> 16));
      af[3] = e4m3x2_as_f16x2(uint16_t(hi[ks] >> 16));
#pragma unroll
      for (int hg = 0; hg < HG; hg++) mma_f16(c[hg], af, qb[hg][ks][0], qb[hg][ks][1]);
    }
    float acc0 = 0.f, acc1 = 0.f;  // keys g and g + 8
#pragma unroll
    for (int hg = 0; hg < HG; hg++) {
      acc0 = fmaf(w0[hg], fmaxf(c[hg][0], 0.f), fmaf(w1[hg], fmaxf(c[hg][1], 0.f), acc0));
      acc1 = fmaf(w0[hg], fmaxf(c[hg][2], 0.f), fmaf(w1[hg], fmaxf(c[hg][3], 0.f), acc1));
    }
    acc0 += __shfl_xor_sync(0xffffffffu, acc0, 1);
    acc0 += __shfl_xor_sync(0xffffffffu, acc0, 2);
    acc1 += __shfl_xor_sync(0xffffffffu, acc1, 1);
    acc1 += __shfl_xor_sync(0xffffffffu, acc1, 2);
    if (tq == 0) {
      const int64_t j = j0 + (warp + i * kWarps) * 16 + g;
      const float* sc = reinterpret_cast<const float*>(slab + 16 * P);
      if (j < jv) out[j] = acc0 * ldexpf(sc[g], -shift);
      if (j + 8 < jv) out[j + 8] = acc1 * ldexpf(sc[g + 8], -shift);
    }
    __syncwarp();  // every lane is done with the stage that the next issue refills
    issue(i + kStages - 1);
  }
  cp_async_wait<0>();
}

// Warpgroup tensor cores (sm_90a): a block of one warpgroup per (query row, chunk), as above.
// The row's queries, all 64 head columns (zero past HI), sit in shared memory as the MMA's B
// operand (dims x heads: core matrices of 8 heads x 8 dims, no swizzle); the keys go straight
// from global memory into registers as the A operand, 64 keys a step (16 a warp), PF steps
// ahead, and 8 (dI 128) or 4 (dI 64) MMAs of 64 keys x 64 heads x 16 dims score the step. As in
// the FP8 kernel, lane (g, t) takes dims [t dI/4, (t + 1) dI/4) of its rows g and g + 8 (one
// contiguous piece, 16-byte loads) at fragment positions {2t, 2t + 1, 2t + 8, 2t + 9} of the
// k-steps, and the queries are stored in the same order. FP8 keys are widened to f16 in
// registers and multiplied with the queries times 2^shift as f16 (ix_scores_mma_fp8); bf16 keys
// with bf16 queries as they are. The ReLU, weights and head sum follow in registers.
template <int D, bool FP8>
constexpr size_t wg_smem_bytes() {  // B (64 heads of D f16/bf16), then the raw query row
  return size_t(64) * D * 2 + size_t(64) * D * (FP8 ? 4 : 2);
}

template <int D, bool FP8>
__global__ void __launch_bounds__(128) ix_scores_wgmma(const IxArgs a) {
#if defined(TOPK_WGMMA)
  constexpr int KS = D / 16;                   // k-steps of 16 dims
  constexpr int LB = FP8 ? D / 4 : D / 2;      // bytes of a lane's piece of a key row
  constexpr int LV = LB / 16;                  // its 16-byte loads
  constexpr int PF = FP8 ? 2 : 1;              // steps loaded ahead
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ float warp_amax[4];
  const int64_t r = blockIdx.x / a.nchunks, j0 = (blockIdx.x % a.nchunks) * a.chunk;
  const int64_t j1 = j0 + a.chunk < a.Smax ? j0 + a.chunk : a.Smax;
  DSeq s;
  int64_t t;
  float* out;
  const int64_t jv = row_setup(a, r, j0, j1, s, t, out);
  if (j0 >= jv) return;  // the whole block returns
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;

  // The raw query row (16-byte copies), then B: head n, dim d at its fragment position.
  uint16_t* qb = reinterpret_cast<uint16_t*>(smem);
  char* raw = reinterpret_cast<char*>(smem) + size_t(64) * D * 2;
  const int rb = D * a.q.esize;
  const int64_t qo = a.q.offset(s.batch, s.q_start + t, 0);
  for (int c = threadIdx.x; c < a.HI * (rb / 16); c += blockDim.x) {
    const int h = c / (rb / 16), ch = c % (rb / 16);
    *reinterpret_cast<uint4*>(raw + h * rb + ch * 16) = *reinterpret_cast<const uint4*>(
        a.q.data + (qo + int64_t(h) * a.q.sh) * a.q.esize + ch * 16);
  }
  __syncthreads();
  int shift = 0;
  if constexpr (FP8) {
    float amax = 0.f;
    for (int i = threadIdx.x; i < a.HI * D; i += blockDim.x) amax = fmaxf(amax, fabsf(load1(raw, a.q.dt, i)));
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (lane == 0) warp_amax[warp] = amax;
    __syncthreads();
    amax = fmaxf(fmaxf(warp_amax[0], warp_amax[1]), fmaxf(warp_amax[2], warp_amax[3]));
    const int ex = ((__float_as_int(amax) >> 23) & 0xff) - 126;
    shift = amax > 0.f ? 14 - ex : 0;
  }
  for (int c = threadIdx.x; c < 64 * D; c += blockDim.x) {
    const int n = c / D, d = c % D;
    const int lt = d / (D / 4), ks = (d % (D / 4)) / 4, e = d % 4;
    const int kk = e < 2 ? 2 * lt + e : 8 + 2 * lt + e - 2;  // position within the k-step
    uint16_t v = 0;
    if (n < a.HI) {
      if constexpr (FP8) v = __half_as_ushort(__float2half_rn(ldexpf(load1(raw, a.q.dt, n * D + d), shift)));
      else v = reinterpret_cast<const uint16_t*>(raw)[n * D + d];
    }
    qb[((n >> 3) * (D / 8) + 2 * ks + (kk >> 3)) * 64 + (n & 7) * 8 + (kk & 7)] = v;
  }
  fence_proxy_async();
  __syncthreads();
  const uint64_t desc = wgmma_desc(qb, 128, D * 16);

  float w[16];  // heads 8 i + 2 t + {0, 1}: the accumulators' columns
  const float* wr = a.w + (int64_t(s.batch) * a.Tq + s.q_start + t) * a.HI;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int h = 8 * i + 2 * tq;
    w[2 * i] = h < a.HI ? wr[h] : 0.f;
    w[2 * i + 1] = h + 1 < a.HI ? wr[h + 1] : 0.f;
  }
  const float* kscale = FP8 ? a.kscale + int64_t(s.batch) * a.kscale_sb + s.k_start : nullptr;
  // Step i, rows 16 warp + g + 8 e of the step: the lane's pieces (zero past the visible keys).
  auto load = [&](int64_t i, uint4 (&b)[2][LV], float (&sc)[2]) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int64_t j = j0 + i * 64 + 16 * warp + g + 8 * e;
      if (j < jv) {
        const uint4* p = reinterpret_cast<const uint4*>(
            a.k.data + a.k.offset(s.batch, s.k_start + j, 0) * a.k.esize + tq * LB);
#pragma unroll
        for (int v = 0; v < LV; v++) b[e][v] = p[v];
        sc[e] = FP8 ? kscale[j] : 1.f;
      } else {
#pragma unroll
        for (int v = 0; v < LV; v++) b[e][v] = make_uint4(0, 0, 0, 0);
        sc[e] = 0.f;
      }
    }
  };
  uint4 buf[PF][2][LV];
  float sbuf[PF][2];
#pragma unroll
  for (int p = 0; p < PF; p++) load(p, buf[p], sbuf[p]);
  const int64_t nsteps = (jv - j0 + 63) / 64;
  float acc[32];
#pragma unroll
  for (int i = 0; i < 32; i++) acc[i] = 0.f;
  for (int64_t i = 0; i < nsteps; i++) {
    uint32_t wd[2][LB / 4];  // the current step's pieces as words
    float sc[2];
#pragma unroll
    for (int e = 0; e < 2; e++) {
#pragma unroll
      for (int v = 0; v < LV; v++) {
        wd[e][4 * v] = buf[0][e][v].x, wd[e][4 * v + 1] = buf[0][e][v].y;
        wd[e][4 * v + 2] = buf[0][e][v].z, wd[e][4 * v + 3] = buf[0][e][v].w;
      }
      sc[e] = sbuf[0][e];
    }
#pragma unroll
    for (int p = 0; p + 1 < PF; p++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
#pragma unroll
        for (int v = 0; v < LV; v++) buf[p][e][v] = buf[p + 1][e][v];
        sbuf[p][e] = sbuf[p + 1][e];
      }
    }
    load(i + PF, buf[PF - 1], sbuf[PF - 1]);
    uint32_t af[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
      if constexpr (FP8) {
        af[ks][0] = e4m3x2_as_f16x2(uint16_t(wd[0][ks]));
        af[ks][1] = e4m3x2_as_f16x2(uint16_t(wd[1][ks]));
        af[ks][2] = e4m3x2_as_f16x2(uint16_t(wd[0][ks] >> 16));
        af[ks][3] = e4m3x2_as_f16x2(uint16_t(wd[1][ks] >> 16));
      } else {
        af[ks][0] = wd[0][2 * ks];
        af[ks][1] = wd[1][2 * ks];
        af[ks][2] = wd[0][2 * ks + 1];
        af[ks][3] = wd[1][2 * ks + 1];
      }
    }
    wgmma_hold(acc);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < KS; ks++) wgmma_m64n64k16<!FP8, false>(acc, af[ks], desc + uint64_t(16 * ks), ks > 0);
    wgmma_commit();
    wgmma_wait_all();
    wgmma_hold(acc);
    float s0 = 0.f, s1 = 0.f;  // rows g and g + 8
#pragma unroll
    for (int q = 0; q < 8; q++) {
      s0 = fmaf(w[2 * q], fmaxf(acc[4 * q], 0.f), fmaf(w[2 * q + 1], fmaxf(acc[4 * q + 1], 0.f), s0));
      s1 = fmaf(w[2 * q], fmaxf(acc[4 * q + 2], 0.f), fmaf(w[2 * q + 1], fmaxf(acc[4 * q + 3], 0.f), s1));
    }
    s0 += __shfl_xor_sync(0xffffffffu, s0, 1);
    s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
    s1 += __shfl_xor_sync(0xffffffffu, s1, 1);
    s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
    if (tq == 0) {
      const int64_t j = j0 + i * 64 + 16 * warp + g;
      if (j < jv) out[j] = FP8 ? s0 * ldexpf(sc[0], -shift) : s0;
      if (j + 8 < jv) out[j + 8] = FP8 ? s1 * ldexpf(sc[1], -shift) : s1;
    }
  }
#else
  __trap();  // launched only where sm_90a machine code runs (has_wgmma)
#endif
}

// FMA path: queries, weights and a tile of kSimpleKeys keys in fp32 shared memory.
__global__ void __launch_bounds__(kSimpleKeys) ix_scores_simple(const IxArgs a) {
  extern __shared__ float sm[];  // q [HI][dI], w [HI], k [kSimpleKeys][dI + 1]
  const int64_t r = blockIdx.x / a.nchunks, j0 = (blockIdx.x % a.nchunks) * kSimpleKeys;
  const int64_t j1 = j0 + kSimpleKeys < a.Smax ? j0 + kSimpleKeys : a.Smax;
  DSeq s;
  int64_t t;
  float* out;
  const int64_t jv = row_setup(a, r, j0, j1, s, t, out);
  if (j0 >= jv) return;
  const int HI = a.HI, dI = a.dI, pitch = dI + 1;
  float* qs = sm;
  float* ws = qs + HI * dI;
  float* ks = ws + HI;
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
  for (int i = threadIdx.x; i < HI * dI; i += blockDim.x)
    qs[i] = load1(a.q.data, a.q.dt, a.q.offset(s.batch, s.q_start + t, i / dI) + i % dI);
  for (int i = threadIdx.x; i < HI; i += blockDim.x) ws[i] = a.w[qrow * HI + i];
  for (int i = threadIdx.x; i < kSimpleKeys * dI; i += blockDim.x) {
    const int64_t j = j0 + i / dI;
    ks[(i / dI) * pitch + i % dI] =
        j < jv ? load1(a.k.data, a.k.dt, a.k.offset(s.batch, s.k_start + j, 0) + i % dI) : 0.f;
  }
  __syncthreads();
  const int64_t j = j0 + threadIdx.x;
  if (j >= jv) return;
  const float* kr = ks + threadIdx.x * pitch;
  float I = 0.f;
  for (int h = 0; h < HI; h++) {
    const float* qh = qs + h * dI;
    float d = 0.f;
    for (int e = 0; e < dI; e++) d = fmaf(qh[e], kr[e], d);
    I = fmaf(ws[h], fmaxf(d, 0.f), I);
  }
  // FP8 keys: the dots over the stored values, then I times the key's scale (ReLU commutes
  // with a positive scale).
  if (a.kscale) I *= a.kscale[int64_t(s.batch) * a.kscale_sb + s.k_start + j];
  out[j] = I;
}

__global__ void broadcast_kernel(const int32_t* src, int32_t* dst, int64_t R, int H, int64_t K) {
  const int64_t n = R * H * K;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / (int64_t(H) * K), c = i % K;
    dst[i] = src[r * K + c];
  }
}

IxArgs ix_args(const IndexerParams& ip, const SeqTable& st) {
  const AttnParams& p = ip.a;
  IxArgs a{};
  a.seqs = st.d;
  a.nseq = st.n;
  a.HI = p.Hq;
  a.dI = p.D;
  a.Smax = p.Smax;
  a.Tq = p.Tq;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.w = ip.w;
  a.out = ip.scores;
  a.kscale = ip.kscale;
  a.kscale_sb = ip.kscale_sb;
  return a;
}

// Launches a tensor-core score kernel (a block of `threads` per (row, chunk)) with its rows in
// chunks of whole waves: a block pays the row's query staging once for its chunk, so few rows
// (decode) take the fewest chunks that still fill the GPU, not a fixed size. per_sm: the
// kernel's occupancy, measured on the first call.
void launch_chunked(void (*kernel)(IxArgs), int threads, size_t smem, int& per_sm, IxArgs a, int64_t rows) {
  allow_smem(kernel, smem);
  if (per_sm < 0) {
    TOPK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    if (per_sm < 1) per_sm = 1;
  }
  const int64_t tiles = (a.Smax + kTile - 1) / kTile;
  const int splits = choose_splits(rows, a.Smax, per_sm, int(std::min<int64_t>(tiles, 1 << 16)));
  a.chunk = (tiles + splits - 1) / splits * kTile;
  a.nchunks = (a.Smax + a.chunk - 1) / a.chunk;
  const int64_t grid = rows * a.nchunks;
  TOPK_CHECK(grid < (int64_t(1) << 31), "indexer_scores: %lld rows x %lld chunks are too many "
             "blocks for one launch", (long long)rows, (long long)a.nchunks);
  kernel<<<unsigned(grid), threads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

template <int D, int HG, bool FP8>
void launch_mma(const IxArgs& a, int64_t rows) {
  static int per_sm = -1;
  launch_chunked(FP8 ? ix_scores_mma_fp8<D, HG> : ix_scores_mma<D, HG>, kWarps * 32,
                 FP8 ? fp8_smem_bytes<D, HG>() : size_t(kWarps) * kStages * 16 * 2 * D, per_sm, a, rows);
}

template <int D, bool FP8>
void launch_wgmma(const IxArgs& a, int64_t rows) {
  static int per_sm = -1;
  launch_chunked(ix_scores_wgmma<D, FP8>, 128, wg_smem_bytes<D, FP8>(), per_sm, a, rows);
}

template <int D, bool FP8>
void launch_mma_heads(const IxArgs& a, int64_t rows) {
  const int hg = (a.HI + 7) / 8;
  if (hg <= 1) launch_mma<D, 1, FP8>(a, rows);
  else if (hg <= 2) launch_mma<D, 2, FP8>(a, rows);
  else if (hg <= 4) launch_mma<D, 4, FP8>(a, rows);
  else launch_mma<D, 8, FP8>(a, rows);
}

}  // namespace

void indexer_scores(const IndexerParams& ip) {
  const AttnParams& p = ip.a;
  SeqTable st = upload_seqs(p);
  if (st.rows == 0 || p.Smax == 0) return;
  IxArgs a = ix_args(ip, st);
  const char* env = std::getenv("TOPK_CUDA_INDEXER_PATH");
  const std::string force = env ? env : "";
  TOPK_CHECK(force.empty() || force == "mma" || force == "wgmma" || force == "simple",
             "TOPK_CUDA_INDEXER_PATH=%s: expected wgmma, mma or simple", force.c_str());
  const bool fp8 = p.k.dtype == DType::f8e4m3;
  const bool fits = (fp8 || (p.q.dtype == DType::bf16 && p.k.dtype == DType::bf16)) &&
                    (p.D == 64 || p.D == 128) && p.Hq <= 64 && rows_aligned(a.q) &&
                    rows_aligned(a.k);
  TOPK_CHECK(force != "mma" || fits, "indexer_scores: TOPK_CUDA_INDEXER_PATH=mma needs bf16 qi and "
             "ki (or FP8 ki), dI 64 or 128, HI <= 64 and 16-byte aligned rows (got %s / %s, dI %d, "
             "HI %d)", dtype_name(p.q.dtype), dtype_name(p.k.dtype), p.D, p.Hq);
  TOPK_CHECK(force != "wgmma" || (fits && has_wgmma()), "indexer_scores: TOPK_CUDA_INDEXER_PATH=wgmma "
             "needs what mma needs on a GPU of compute capability 9.0");
  if (fits && force == "wgmma") {
    if (fp8) {
      if (p.D == 64) launch_wgmma<64, true>(a, st.rows);
      else launch_wgmma<128, true>(a, st.rows);
    } else {
      if (p.D == 64) launch_wgmma<64, false>(a, st.rows);
      else launch_wgmma<128, false>(a, st.rows);
    }
    return;
  }
  if (fits && force != "simple") {
    // dI 64 or 128 only (fits): the tensor-core kernels hold every head's queries in registers.
    if (fp8) {
      if (p.D == 64) launch_mma_heads<64, true>(a, st.rows);
      else launch_mma_heads<128, true>(a, st.rows);
    } else {
      if (p.D == 64) launch_mma_heads<64, false>(a, st.rows);
      else launch_mma_heads<128, false>(a, st.rows);
    }
    return;
  }
  const size_t smem = (size_t(p.Hq) * p.D + p.Hq + size_t(kSimpleKeys) * (p.D + 1)) * 4;
  TOPK_CHECK(smem <= kMaxBlockSmem, "indexer_scores: HI = %d heads of dI = %d do not fit the CUDA "
             "kernel's shared memory (%zu bytes)", p.Hq, p.D, smem);
  allow_smem(ix_scores_simple, smem);
  a.nchunks = (p.Smax + kSimpleKeys - 1) / kSimpleKeys;
  const int64_t grid = st.rows * a.nchunks;
  TOPK_CHECK(grid < (int64_t(1) << 31), "indexer_scores: too many blocks for one launch");
  ix_scores_simple<<<unsigned(grid), kSimpleKeys, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

void broadcast_rows(const int32_t* src, int32_t* dst, int64_t R, int H, int64_t K) {
  const int64_t n = R * H * K;
  if (n == 0) return;
  const int64_t blocks = (n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096;
  broadcast_kernel<<<unsigned(blocks), 256, 0, stream()>>>(src, dst, R, H, K);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::cuda
