// Full attention backward on tensor cores, FlashAttention-2 recomputation for bf16 or f16 q, k,
// v with D 64, 128 or 256 (the op, its prep and the other shapes are in attention_backward.cu).
// Two kernels, each the only writer of its outputs (no atomics, fixed summation order):
//   dK/dV  a block per (128-key tile, KV head), 8 warps of 16 keys; K and V stay in shared
//          memory while 64-query tiles of Q and dout (with their (lse, Delta) pairs) of every
//          head of the group stream through two cp.async stages. Per 32 queries and warp:
//            S^T = K Q^T, P^T = 2^(S^T scale log2 e - lse log2 e)   (keys x queries)
//            dP^T = V dO^T, dS^T = P^T (dP^T - Delta)
//            dV += P^T dO,  dK += dS^T Q                (P^T, dS^T straight from registers)
//          At D = 256 a warp cannot hold both dK and dV of its keys: 64-key tiles, and warps w
//          and w + 4 share keys 16 w .. 16 w + 15, w doing S, P and dV, w + 4 dP, dS and dK with
//          P^T passed through shared memory (flash_dkdv_pair_kernel; 209 KiB).
//   dQ     a block per (128-query tile, query head), 8 warps of 16 rows; 64-key K and V tiles
//          (32 at D = 256: 192 KiB) through two stages: S = Q K^T, P, dP = dO V^T, dS, dQ += dS K.
// On compute capability 9.0 at D 64 and 128 both run on warpgroup MMAs instead
// (flash_backward_wgmma.cu), 11% faster on an H100; TOPK_CUDA_FLASH_PATH=mma forces these.
// P and dS are rounded to the input dtype for their products, as FlashAttention does; the
// sums are fp32. Causal tiles start at the first query that sees the tile (dK/dV) or end at the
// last key the tile's last row sees (dQ), and mask only where a tile crosses the diagonal.
#include <cmath>
#include <vector>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kQRows = 128;  // dQ: query rows per block
constexpr int kKRows = 64;   // dK/dV: query rows per stage (two steps of 32)
// dQ: keys per tile (at D = 256 the 32 x 32 S and dP blocks of a warp fit beside dQ's 128
// accumulators, and the two stages beside Q and dout in shared memory).
constexpr int dq_keys(int D) { return D <= 128 ? 64 : 32; }
// dK/dV: keys per block (at D = 256 four pairs of warps of 16 keys, flash_dkdv_pair_kernel).
constexpr int dkdv_keys(int D) { return D <= 128 ? 128 : 64; }

// The P^T blocks the S warps pass to the dP warps at D = 256: [pair][step % 2][4][32 lanes] of
// float4, each lane's 16 fp32 values of a 16-key x 32-query block.
constexpr int kPairBufBytes = 4 * 2 * 4 * 32 * sizeof(float4);

// K and V, two stages of (Q, dout) with their (lse, Delta) pairs, and at D = 256 the P blocks
// the pairs of warps pass (flash_dkdv_pair_kernel).
template <int D>
constexpr size_t dkdv_smem() {
  return size_t(2 * dkdv_keys(D) + 4 * kKRows) * 2 * D + 2 * kKRows * sizeof(float2) +
         (D <= 128 ? 0 : kPairBufBytes);
}
template <int D>
constexpr size_t dq_smem() { return size_t(2 * kQRows + 4 * dq_keys(D)) * 2 * D; }

template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_dkdv_kernel(const FlashBwdArgs a) {
  static_assert(D <= 128, "dK and dV of 16 keys over D = 256 fill a warp's registers alone");
  constexpr int kKKeys = dkdv_keys(D);
  constexpr int kTileBytes = kKRows * 2 * D;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sk = smem;                           // [kKKeys][D]
  unsigned char* sv = sk + kKKeys * 2 * D;            // [kKKeys][D]
  unsigned char* sqd = sv + kKKeys * 2 * D;           // [2][Q, dout][kKRows][D]
  float2* sld = reinterpret_cast<float2*>(sqd + 4 * kTileBytes);  // [2][kKRows]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const FlashKTile kt = flash_k_tile(a, kKKeys, kKRows);
  const DSeq s = kt.s;
  const int kvh = kt.kvh, nk = kt.nk, nitems = kt.nitems;
  const int64_t j0 = kt.j0;

  flash_load_k_tile<D, kKKeys, kThreads, false>(a, kt, sk, sv);
  // Item it's Q and dout rows and (lse, Delta) pairs into stage it % 2; rows past T zeroed, with
  // lse = +inf so that they weigh 0.
  auto issue = [&](int it) {
    flash_load_item<D, kKRows, kThreads, false>(a, kt, it, sqd + (it & 1) * 2 * kTileBytes, sld + (it & 1) * kKRows);
  };
  if (nitems > 0) issue(0);
  cp_async_commit();

  const int64_t ja = j0 + warp * 16 + g;  // this lane's key rows
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;

  for (int it = 0; it < nitems; it++) {
    cp_async_wait<0>();
    __syncthreads();  // item it (and K, V) are in; every warp is done with item it - 1's stage
    if (it + 1 < nitems) issue(it + 1);
    cp_async_commit();
    const int st = it & 1;
    const FlashItem q = flash_item(kt, a.G, it, kKRows);
    const int qr = q.qr;
    const unsigned char* tq = sqd + st * 2 * kTileBytes;
    const unsigned char* td = tq + kTileBytes;
    const float2* ld = sld + st * kKRows;
    int lim_a, lim_b;
    const bool mask = flash_item_mask(a.causal, kt, q, ja, kKRows, lim_a, lim_b);

#pragma unroll 1  // one 32-query step at a time: dk, dv and both 16 x 32 blocks fill the registers
    for (int half = 0; half < kKRows / 32; half++) {
      const int qb = half * 32;
      if (qb >= qr) break;  // uniform over the block
      float sc[4][4], dp[4][4];
#pragma unroll
      for (int n = 0; n < 4; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) sc[n][e] = dp[n][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++) {
        uint32_t ka[4], va[4];
        ldmatrix_x4(ka, frag_a<D>(sk, warp * 16, ks));
        ldmatrix_x4(va, frag_a<D>(sv, warp * 16, ks));
#pragma unroll
        for (int np = 0; np < 2; np++) {
          uint32_t b[4];
          ldmatrix_x4(b, frag_b<D>(tq, qb + np * 16, ks));
          mma16<DT>(sc[2 * np], ka, b[0], b[1]);
          mma16<DT>(sc[2 * np + 1], ka, b[2], b[3]);
          ldmatrix_x4(b, frag_b<D>(td, qb + np * 16, ks));
          mma16<DT>(dp[2 * np], va, b[0], b[1]);
          mma16<DT>(dp[2 * np + 1], va, b[2], b[3]);
        }
      }
      flash_pds_t_step(sc, dp, ld, qb, a.sl2, mask, lim_a, lim_b);
#pragma unroll
      for (int kk = 0; kk < 2; kk++) {
        uint32_t pa[4], da[4];
        acc_to_a<DT>(pa, sc[2 * kk], sc[2 * kk + 1]);
        acc_to_a<DT>(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int d = 0; d < D / 16; d++) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, frag_a<D>(td, qb + kk * 16, d));
          mma16<DT>(dv[2 * d], pa, b[0], b[1]);
          mma16<DT>(dv[2 * d + 1], pa, b[2], b[3]);
          ldmatrix_x4_trans(b, frag_a<D>(tq, qb + kk * 16, d));
          mma16<DT>(dk[2 * d], da, b[0], b[1]);
          mma16<DT>(dk[2 * d + 1], da, b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

  // Every key row of the tile is written (0 when no query sees it).
  flash_store_dkdv<D>(a, s, kvh, ja, j0 + nk, dk, dv);
}

// bar.sync for the two warps of pair p alone (barrier 1 + p; __syncthreads uses 0).
__device__ __forceinline__ void pair_sync(int p) {
  asm volatile("bar.sync %0, 64;" ::"r"(1 + p) : "memory");
}

// dK/dV at D = 256, where a warp's dK and dV accumulators of 16 keys (256 registers) do not fit:
// a block per (64-key tile, KV head), warps w and w + 4 (pair w) on keys 16 w .. 16 w + 15.
// Per 32-query step the S warp w computes S^T = K Q^T and P^T, hands P^T to the dP warp w + 4
// through shared memory (double-buffered by step parity, so one pair barrier per step: the S
// warp writes a buffer again only two steps later, past the barrier the dP warp reaches after
// reading it), and accumulates dV += P^T dO; the dP warp computes dP^T = V dO^T, dS^T and
// dK += dS^T Q. Each product is done once, in flash_dkdv_kernel's order over D: the same sums.
template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_dkdv_pair_kernel(const FlashBwdArgs a) {
  constexpr int kKeys = dkdv_keys(D);
  static_assert(kKeys == 16 * (kThreads / 64), "a pair of warps per 16 keys");
  constexpr int kTileBytes = kKRows * 2 * D;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sk = smem;                           // [kKeys][D]
  unsigned char* sv = sk + kKeys * 2 * D;             // [kKeys][D]
  unsigned char* sqd = sv + kKeys * 2 * D;            // [2][Q, dout][kKRows][D]
  float2* sld = reinterpret_cast<float2*>(sqd + 4 * kTileBytes);  // [2][kKRows]
  float4* sp = reinterpret_cast<float4*>(sld + 2 * kKRows);       // kPairBufBytes

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c2 = (lane & 3) * 2;
  const int pair = warp & 3;
  const bool dpw = warp >= 4;  // a dP warp (dP, dS, dK), else an S warp (S, P, dV)
  const FlashKTile kt = flash_k_tile(a, kKeys, kKRows);
  const DSeq s = kt.s;
  const int kvh = kt.kvh, nk = kt.nk, nitems = kt.nitems;
  const int64_t j0 = kt.j0;

  flash_load_k_tile<D, kKeys, kThreads, false>(a, kt, sk, sv);
  auto issue = [&](int it) {  // as in flash_dkdv_kernel
    flash_load_item<D, kKRows, kThreads, false>(a, kt, it, sqd + (it & 1) * 2 * kTileBytes, sld + (it & 1) * kKRows);
  };
  if (nitems > 0) issue(0);
  cp_async_commit();

  const int64_t ja = j0 + pair * 16 + g, jb = ja + 8;  // this lane's key rows
  float acc[D / 8][4];  // dV (S warp) or dK (dP warp) of keys ja, jb
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) acc[i][e] = 0.f;
  const unsigned char* ra = dpw ? sv : sk;  // A of the first product: K (S^T) or V (dP^T)
  int step = 0;                             // 32-query steps so far: the P^T buffer's parity

  for (int it = 0; it < nitems; it++) {
    cp_async_wait<0>();
    __syncthreads();  // item it (and K, V) are in; every warp is done with item it - 1's stage
    if (it + 1 < nitems) issue(it + 1);
    cp_async_commit();
    const int st = it & 1;
    const FlashItem q = flash_item(kt, a.G, it, kKRows);
    const int qr = q.qr;
    const unsigned char* tq = sqd + st * 2 * kTileBytes;
    const unsigned char* td = tq + kTileBytes;
    const unsigned char* rb = dpw ? td : tq;  // B of the first product: Q (S^T) or dout (dP^T)
    const unsigned char* rc = dpw ? tq : td;  // B of the second: dout (dV) or Q (dK)
    const float2* ld = sld + st * kKRows;
    // The causal mask, as in flash_dkdv_kernel (used by the S warps).
    int lim_a, lim_b;
    const bool mask = flash_item_mask(a.causal, kt, q, ja, kKRows, lim_a, lim_b);

#pragma unroll 1
    for (int half = 0; half < kKRows / 32; half++) {
      const int qb = half * 32;
      if (qb >= qr) break;  // uniform over the block
      float x[4][4];  // S^T then P^T (S warp); dP^T then dS^T (dP warp): 16 keys x 32 queries
#pragma unroll
      for (int n = 0; n < 4; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) x[n][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++) {
        uint32_t fa[4];
        ldmatrix_x4(fa, frag_a<D>(ra, pair * 16, ks));
#pragma unroll
        for (int np = 0; np < 2; np++) {
          uint32_t b[4];
          ldmatrix_x4(b, frag_b<D>(rb, qb + np * 16, ks));
          mma16<DT>(x[2 * np], fa, b[0], b[1]);
          mma16<DT>(x[2 * np + 1], fa, b[2], b[3]);
        }
      }
      float4* pbuf = sp + (pair * 2 + (step & 1)) * 4 * 32 + lane;  // [n * 32]: this lane's x[n]
      step++;
      if (!dpw) {
#pragma unroll
        for (int n = 0; n < 4; n++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int col = qb + 8 * n + c2 + (e & 1);
            float pv = ex2(fmaf(x[n][e], a.sl2, -ld[col].x));  // 0 for rows past T (lse = +inf)
            if (mask && col <= (e < 2 ? lim_a : lim_b)) pv = 0.f;
            x[n][e] = pv;
          }
          pbuf[n * 32] = make_float4(x[n][0], x[n][1], x[n][2], x[n][3]);
        }
      }
      pair_sync(pair);  // this step's P^T is in the buffer
      if (dpw) {
#pragma unroll
        for (int n = 0; n < 4; n++) {
          const float4 p4 = pbuf[n * 32];
          const float pv[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int col = qb + 8 * n + c2 + (e & 1);
            x[n][e] = pv[e] * (x[n][e] - ld[col].y);
          }
        }
      }
#pragma unroll
      for (int kk = 0; kk < 2; kk++) {
        uint32_t pa[4];
        acc_to_a<DT>(pa, x[2 * kk], x[2 * kk + 1]);
#pragma unroll
        for (int d = 0; d < D / 16; d++) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, frag_a<D>(rc, qb + kk * 16, d));
          mma16<DT>(acc[2 * d], pa, b[0], b[1]);
          mma16<DT>(acc[2 * d + 1], pa, b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

  // Every key row of the tile is written (0 when no query sees it).
  float* out = dpw ? a.dk : a.dv;
  const float f = dpw ? a.scale : 1.f;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int64_t j = half ? jb : ja;
    if (j >= j0 + nk) continue;
    const int64_t off = ((int64_t(s.batch) * a.Smax + s.k_start + j) * a.Hkv + kvh) * D;
#pragma unroll
    for (int d = 0; d < D / 8; d++)
      *reinterpret_cast<float2*>(out + off + 8 * d + c2) =
          make_float2(acc[d][2 * half] * f, acc[d][2 * half + 1] * f);
  }
}

template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_dq_kernel(const FlashBwdArgs a) {
  constexpr int kQKeys = dq_keys(D);
  constexpr int kTileBytes = kQKeys * 2 * D;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sq = smem;                    // [kQRows][D]
  unsigned char* sdo = sq + kQRows * 2 * D;    // [kQRows][D]
  unsigned char* skv = sdo + kQRows * 2 * D;   // [2][K, V][kQKeys][D]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const FlashQTile qt = flash_q_tile(a.tiles, a.seqs, a.Hq, a.G, a.causal, a.k, a.v, kQRows);
  const DSeq s = qt.s;
  const int h = qt.h, t0 = qt.t0, rows = qt.rows;
  const int64_t n_lo = qt.n_lo, n_hi = qt.n_hi;
  const int ntiles = int((n_hi + kQKeys - 1) / kQKeys);
  auto issue = [&](int i) {  // key tile i into stage i % 2
    flash_load_kv<D, kQKeys, kThreads, false>(skv + (i & 1) * 2 * kTileBytes, qt, a.k, a.v, i);
  };
  load_tile<D, kQRows, kThreads>(sq, a.q.data + a.q.offset(s.batch, s.q_start + t0, h) * 2, a.q.st * 2, rows);
  load_tile<D, kQRows, kThreads>(sdo, a.dout.data + a.dout.offset(s.batch, s.q_start + t0, h) * 2,
                                 a.dout.st * 2, rows);
  if (ntiles > 0) issue(0);
  cp_async_commit();

  const int tr = t0 + warp * 16 + g;  // this lane's rows: tr and tr + 8
  const int64_t nv0 = visible_keys(s, tr, a.causal), nv1 = visible_keys(s, tr + 8, a.causal);
  const float2 ld0 = tr < t0 + rows ? a.ld[int64_t(h) * a.R + s.r0 + tr] : make_float2(INFINITY, 0.f);
  const float2 ld1 = tr + 8 < t0 + rows ? a.ld[int64_t(h) * a.R + s.r0 + tr + 8] : make_float2(INFINITY, 0.f);
  float acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;

  for (int i = 0; i < ntiles; i++) {
    cp_async_wait<0>();
    __syncthreads();  // tile i is in; every warp is done with tile i - 1's stage
    if (i + 1 < ntiles) issue(i + 1);
    cp_async_commit();
    const unsigned char* kt = skv + (i & 1) * 2 * kTileBytes;
    const unsigned char* vt = kt + kTileBytes;
    float sc[kQKeys / 8][4], dp[kQKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kQKeys / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) sc[n][e] = dp[n][e] = 0.f;
    auto kstep = [&](int ks) {
      uint32_t qa[4], oa[4];
      ldmatrix_x4(qa, frag_a<D>(sq, warp * 16, ks));
      ldmatrix_x4(oa, frag_a<D>(sdo, warp * 16, ks));
#pragma unroll
      for (int np = 0; np < kQKeys / 16; np++) {
        uint32_t b[4];
        ldmatrix_x4(b, frag_b<D>(kt, np * 16, ks));
        mma16<DT>(sc[2 * np], qa, b[0], b[1]);
        mma16<DT>(sc[2 * np + 1], qa, b[2], b[3]);
        ldmatrix_x4(b, frag_b<D>(vt, np * 16, ks));
        mma16<DT>(dp[2 * np], oa, b[0], b[1]);
        mma16<DT>(dp[2 * np + 1], oa, b[2], b[3]);
      }
    };
    if constexpr (D <= 128) {
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++) kstep(ks);
    } else {
      // Four k-steps (the swizzle's period) at a time: fully unrolled, ptxas hoisted loads past
      // the registers left beside the 128 accumulators of dQ, and spilled.
#pragma unroll 4
      for (int ks = 0; ks < D / 16; ks++) kstep(ks);
    }
    const int64_t j0 = int64_t(i) * kQKeys;
    // dS in dp; masked when some key lies past some row's visible keys.
    flash_ds_tile(sc, dp, a.sl2, ld0, ld1, j0 + kQKeys > n_lo, j0, nv0, nv1);
#pragma unroll
    for (int kk = 0; kk < kQKeys / 16; kk++) {
      uint32_t da[4];
      acc_to_a<DT>(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int d = 0; d < D / 16; d++) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, frag_a<D>(kt, kk * 16, d));
        mma16<DT>(acc[2 * d], da, b[0], b[1]);
        mma16<DT>(acc[2 * d + 1], da, b[2], b[3]);
      }
    }
  }
  cp_async_wait<0>();

  flash_store_dq<D>(a.dq, s, h, a.Hq, a.Tq, tr, t0 + rows, acc, a.scale);
}

template <int D, int DT>
void run_flash_backward(const FlashBwdArgs& a, const FlashTile* ktiles, int64_t kblocks,
                        const FlashTile* qtiles, int64_t qblocks) {
  constexpr size_t ks = dkdv_smem<D>(), qs = dq_smem<D>();
  static_assert(ks <= kMaxBlockSmem && qs <= kMaxBlockSmem,
                "flash backward: tiles past the shared-memory limit");
  void (*dkdv)(FlashBwdArgs);
  if constexpr (D <= 128) dkdv = flash_dkdv_kernel<D, DT>;
  else dkdv = flash_dkdv_pair_kernel<D, DT>;
  allow_smem(dkdv, ks);
  allow_smem(flash_dq_kernel<D, DT>, qs);
  FlashBwdArgs b = a;
  const bool wg = D <= 128 && flash_use_wgmma(D, true);
  if (kblocks > 0) {
    b.tiles = ktiles;
    if (wg) {
      launch_flash_dkdv_wgmma<D <= 128 ? D : 128, DT>(b, kblocks);
    } else {
      dkdv<<<unsigned(kblocks), kThreads, ks, stream()>>>(b);
      TOPK_CUDA_LAUNCH();
    }
  }
  if (qblocks > 0) {
    b.tiles = qtiles;
    if (wg) {
      launch_flash_dq_wgmma<D <= 128 ? D : 128, DT>(b, qblocks);
    } else {
      flash_dq_kernel<D, DT><<<unsigned(qblocks), kThreads, qs, stream()>>>(b);
      TOPK_CUDA_LAUNCH();
    }
  }
}

}  // namespace

bool flash_backward_fits(const AttnParams& p) {
  const DRows q = drows(p.q), k = drows(p.k), v = drows(p.v);
  if (q.dt == kF32 || k.dt != q.dt || v.dt != q.dt) return false;
  if (p.D != 64 && p.D != 128 && p.D != 256) return false;
  return rows_aligned(q) && rows_aligned(k) && rows_aligned(v);
}

void launch_flash_backward(const AttnParams& p, const SeqTable& st, const float* ld,
                           const Rows& dout16) {
  FlashBwdArgs a;
  a.seqs = st.d;
  a.R = st.rows;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  a.scale = p.scale;
  a.sl2 = float(double(p.scale) * 1.4426950408889634);
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  a.dout = drows(dout16);
  a.ld = reinterpret_cast<const float2*>(ld);
  a.dq = p.dq;
  a.dk = p.dk;
  a.dv = p.dv;
  a.Tq = p.Tq;
  a.Smax = p.Smax;
  const std::vector<FlashTile> kt = flash_tiles(p, dkdv_keys(p.D), true), qt = flash_tiles(p, kQRows, false);
  const int64_t kblocks = int64_t(kt.size()) * p.Hkv, qblocks = int64_t(qt.size()) * p.Hq;
  TOPK_CHECK(kblocks < (int64_t(1) << 31) && qblocks < (int64_t(1) << 31),
             "attention_backward: too many tiles for one launch");
  const FlashTile* ktab = kt.empty() ? nullptr : static_cast<const FlashTile*>(
      upload_table(kTabFlashK, kt.data(), kt.size() * sizeof(FlashTile)));
  const FlashTile* qtab = qt.empty() ? nullptr : static_cast<const FlashTile*>(
      upload_table(kTabFlashQ, qt.data(), qt.size() * sizeof(FlashTile)));
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "attention_backward",
      if (a.q.dt == kBF16) run_flash_backward<kD, kBF16>(a, ktab, kblocks, qtab, qblocks);
      else run_flash_backward<kD, kF16>(a, ktab, kblocks, qtab, qblocks));
}

}  // namespace topk::cuda
