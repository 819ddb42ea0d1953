// The full attention backward's two kernels on warpgroup tensor cores (sm_90a; bf16 or f16, D
// 64 or 128), flash_backward.cu's with their products as asynchronous warpgroup MMAs. Both are
// blocks of two warpgroups; every tile in shared memory is core matrices (load_tile_cm,
// flash.cuh), read as K-major or MN-major operands. Each kernel is the only writer of its
// outputs, in a fixed order: deterministic, as the mma.sync kernels.
//   dK/dV  a block per (128-key tile, KV head), 64 keys a warpgroup; K and V stay in shared
//          memory while 64-query tiles of Q and dout of every head of the group (with their
//          (lse, Delta) pairs) stream through two stages. Per 32 queries and warpgroup:
//            S^T = K Q^T, dP^T = V dO^T       64 x 32 each, both operands from shared memory
//            P^T = 2^(S^T scale log2 e - lse log2 e), dS^T = P^T (dP^T - Delta)
//            dV += P^T dO, dK += dS^T Q       64 x D, P^T and dS^T from registers, dO and Q
//                                             as MN-major operands
//   dQ     a block per (128-query tile, query head), 64 rows a warpgroup; Q and dout stay in
//          shared memory, 64-key K and V tiles stream through two stages. Per key tile:
//            S = Q K^T, dP = dO V^T           64 x 64 each, both operands from shared memory
//            P, dS = P (dP - Delta)           rounded to the input dtype
//            dQ += dS K                       64 x D, dS from registers, K MN-major
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"

namespace topk::cuda {

namespace {

constexpr int kRows = 128;  // dQ: query rows per block, 64 per warpgroup
constexpr int kKeys = 64;   // dQ: keys per tile
constexpr int kKTile = 128;  // dK/dV: keys per block, 64 per warpgroup
constexpr int kQTile = 64;   // dK/dV: query rows per stage (two steps of 32)
constexpr int kThreads = 256;

// dQ: Q, dout, then two stages of (K tile, V tile).
template <int D>
constexpr size_t dq_wg_smem() { return size_t(2 * kRows + 4 * kKeys) * 2 * D; }
// dK/dV: K, V, two stages of (Q tile, dout tile), and their (lse, Delta) pairs.
template <int D>
constexpr size_t dkdv_wg_smem() { return size_t(2 * kKTile + 4 * kQTile) * 2 * D + 2 * kQTile * sizeof(float2); }

template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_dkdv_wgmma_kernel(const FlashBwdArgs a) {
#if defined(TOPK_WGMMA)
  constexpr int kTileBytes = kQTile * 2 * D;
  constexpr bool kBF = DT == kBF16;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sk = smem;                           // [kKTile][D]
  unsigned char* sv = sk + kKTile * 2 * D;            // [kKTile][D]
  unsigned char* sqd = sv + kKTile * 2 * D;           // [2][Q, dout][kQTile][D]
  float2* sld = reinterpret_cast<float2*>(sqd + 4 * kTileBytes);  // [2][kQTile]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const FlashKTile kt = flash_k_tile(a, kKTile, kQTile);
  const DSeq s = kt.s;
  const int kvh = kt.kvh, nk = kt.nk, nitems = kt.nitems;
  const int64_t j0 = kt.j0;

  flash_load_k_tile<D, kKTile, kThreads, true>(a, kt, sk, sv);
  // Item it's Q and dout rows and (lse, Delta) pairs into stage it % 2; rows past T zeroed, with
  // lse = +inf so that they weigh 0.
  auto issue = [&](int it) {
    flash_load_item<D, kQTile, kThreads, true>(a, kt, it, sqd + (it & 1) * 2 * kTileBytes, sld + (it & 1) * kQTile);
  };
  if (nitems > 0) issue(0);
  cp_async_commit();

  // This warpgroup's 64 keys start at core-matrix row group 8 wg: 16 D bytes a group.
  const int wg = warp >> 2;
  const uint64_t kdesc = wgmma_desc(sk + wg * 128 * D, 128, 16 * D);
  const uint64_t vdesc = wgmma_desc(sv + wg * 128 * D, 128, 16 * D);
  const int64_t ja = j0 + warp * 16 + g;  // this lane's key rows (16 warp = 64 wg + 16 (warp % 4))
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[i][e] = dv[i][e] = 0.f;
  float(&dkf)[D / 2] = reinterpret_cast<float(&)[D / 2]>(dk);
  float(&dvf)[D / 2] = reinterpret_cast<float(&)[D / 2]>(dv);
  float sc[4][4] = {}, dp[4][4] = {};
  float(&sf)[16] = reinterpret_cast<float(&)[16]>(sc);
  float(&pf)[16] = reinterpret_cast<float(&)[16]>(dp);

  for (int it = 0; it < nitems; it++) {
    cp_async_wait<0>();
    fence_proxy_async();  // the copies' bytes, visible to the MMAs' reads
    __syncthreads();      // item it (and K, V) are in; both warpgroups are done with item it - 1
    if (it + 1 < nitems) issue(it + 1);
    cp_async_commit();
    const int st = it & 1;
    const FlashItem q = flash_item(kt, a.G, it, kQTile);
    const int qr = q.qr;
    const unsigned char* tq = sqd + st * 2 * kTileBytes;
    const unsigned char* td = tq + kTileBytes;
    const float2* ld = sld + st * kQTile;
    int lim_a, lim_b;
    const bool mask = flash_item_mask(a.causal, kt, q, ja, kQTile, lim_a, lim_b);

#pragma unroll 1
    for (int half = 0; half < kQTile / 32; half++) {
      const int qb = half * 32;
      if (qb >= qr) break;  // uniform over the block
      // Queries qb.. of the stage: row group qb / 8, 16 D bytes a group.
      const uint64_t qdesc = wgmma_desc(tq + qb * 2 * D, 128, 16 * D);
      const uint64_t odesc = wgmma_desc(td + qb * 2 * D, 128, 16 * D);
      wgmma_hold(sf);
      wgmma_hold(pf);
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++)
        wgmma_m64n32k16_ss<kBF>(sf, kdesc + uint64_t(16 * ks), qdesc + uint64_t(16 * ks), ks > 0);
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++)
        wgmma_m64n32k16_ss<kBF>(pf, vdesc + uint64_t(16 * ks), odesc + uint64_t(16 * ks), ks > 0);
      wgmma_commit();
      wgmma_wait_all();
      wgmma_hold(sf);
      wgmma_hold(pf);
      flash_pds_t_step(sc, dp, ld, qb, a.sl2, mask, lim_a, lim_b);
      uint32_t pa[2][4], da[2][4];
#pragma unroll
      for (int kk = 0; kk < 2; kk++) {
        acc_to_a<DT>(pa[kk], sc[2 * kk], sc[2 * kk + 1]);
        acc_to_a<DT>(da[kk], dp[2 * kk], dp[2 * kk + 1]);
      }
      // dO and Q as MN-major operands: 16 queries = 2 core matrices along K (32 D bytes).
      const uint64_t omn = wgmma_desc(td + qb * 2 * D, 16 * D, 128);
      const uint64_t qmn = wgmma_desc(tq + qb * 2 * D, 16 * D, 128);
      wgmma_hold(dvf);
      wgmma_hold(dkf);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 2; kk++) {
        if constexpr (D == 128) {
          wgmma_m64n128k16<kBF, true>(dvf, pa[kk], omn + uint64_t(2 * D * kk), 1);
          wgmma_m64n128k16<kBF, true>(dkf, da[kk], qmn + uint64_t(2 * D * kk), 1);
        } else {
          wgmma_m64n64k16<kBF, true>(dvf, pa[kk], omn + uint64_t(2 * D * kk), 1);
          wgmma_m64n64k16<kBF, true>(dkf, da[kk], qmn + uint64_t(2 * D * kk), 1);
        }
      }
      wgmma_commit();
      wgmma_wait_all();
      wgmma_hold(dvf);
      wgmma_hold(dkf);
    }
  }
  cp_async_wait<0>();

  // Every key row of the tile is written (0 when no query sees it).
  flash_store_dkdv<D>(a, s, kvh, ja, j0 + nk, dk, dv);
#else
  __trap();  // launched only where sm_90a machine code runs (flash_use_wgmma)
#endif
}

template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_dq_wgmma_kernel(const FlashBwdArgs a) {
#if defined(TOPK_WGMMA)
  constexpr int kTileBytes = kKeys * 2 * D;
  constexpr bool kBF = DT == kBF16;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sq = smem;                   // [kRows][D]
  unsigned char* sdo = sq + kRows * 2 * D;    // [kRows][D]
  unsigned char* skv = sdo + kRows * 2 * D;   // [2][K, V][kKeys][D]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const FlashQTile qt = flash_q_tile(a.tiles, a.seqs, a.Hq, a.G, a.causal, a.k, a.v, kRows);
  const DSeq s = qt.s;
  const int h = qt.h, t0 = qt.t0, rows = qt.rows;
  const int64_t n_lo = qt.n_lo, n_hi = qt.n_hi;
  const int ntiles = int((n_hi + kKeys - 1) / kKeys);
  auto issue = [&](int i) {  // key tile i into stage i % 2
    flash_load_kv<D, kKeys, kThreads, true>(skv + (i & 1) * 2 * kTileBytes, qt, a.k, a.v, i);
  };
  load_tile_cm<D, kRows, kThreads>(sq, a.q.data + a.q.offset(s.batch, s.q_start + t0, h) * 2,
                                   a.q.st * 2, rows);
  load_tile_cm<D, kRows, kThreads>(sdo, a.dout.data + a.dout.offset(s.batch, s.q_start + t0, h) * 2,
                                   a.dout.st * 2, rows);
  if (ntiles > 0) issue(0);
  cp_async_commit();

  // This warpgroup's 64 rows start at core-matrix row group 8 wg: 16 D bytes a group.
  const int wg = warp >> 2;
  const uint64_t qdesc = wgmma_desc(sq + wg * 128 * D, 128, 16 * D);
  const uint64_t odesc = wgmma_desc(sdo + wg * 128 * D, 128, 16 * D);
  const int tr = t0 + wg * 64 + (warp & 3) * 16 + g;  // this lane's rows: tr and tr + 8
  const int64_t nv0 = visible_keys(s, tr, a.causal), nv1 = visible_keys(s, tr + 8, a.causal);
  const float2 ld0 = tr < t0 + rows ? a.ld[int64_t(h) * a.R + s.r0 + tr] : make_float2(INFINITY, 0.f);
  const float2 ld1 = tr + 8 < t0 + rows ? a.ld[int64_t(h) * a.R + s.r0 + tr + 8] : make_float2(INFINITY, 0.f);
  float acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  float(&af)[D / 2] = reinterpret_cast<float(&)[D / 2]>(acc);
  float sc[kKeys / 8][4] = {}, dp[kKeys / 8][4] = {};
  float(&sf)[kKeys / 2] = reinterpret_cast<float(&)[kKeys / 2]>(sc);
  float(&pf)[kKeys / 2] = reinterpret_cast<float(&)[kKeys / 2]>(dp);

  for (int i = 0; i < ntiles; i++) {
    cp_async_wait<0>();
    fence_proxy_async();  // the copies' bytes, visible to the MMAs' reads
    __syncthreads();      // tile i is in; both warpgroups are done with tile i - 1's stage
    if (i + 1 < ntiles) issue(i + 1);
    cp_async_commit();
    const unsigned char* kt = skv + (i & 1) * 2 * kTileBytes;
    const unsigned char* vt = kt + kTileBytes;
    const uint64_t kdesc = wgmma_desc(kt, 128, 16 * D), vdesc = wgmma_desc(vt, 128, 16 * D);
    wgmma_hold(sf);
    wgmma_hold(pf);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)  // 16 dims: 2 core matrices along K, 256 bytes
      wgmma_m64n64k16_ss<kBF>(sf, qdesc + uint64_t(16 * ks), kdesc + uint64_t(16 * ks), ks > 0);
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)
      wgmma_m64n64k16_ss<kBF>(pf, odesc + uint64_t(16 * ks), vdesc + uint64_t(16 * ks), ks > 0);
    wgmma_commit();
    wgmma_wait_all();
    wgmma_hold(sf);
    wgmma_hold(pf);

    const int64_t j0 = int64_t(i) * kKeys;
    // dS in dp; masked when some key lies past some row's visible keys.
    flash_ds_tile(sc, dp, a.sl2, ld0, ld1, j0 + kKeys > n_lo, j0, nv0, nv1);
    uint32_t da[kKeys / 16][4];
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; kk++) acc_to_a<DT>(da[kk], dp[2 * kk], dp[2 * kk + 1]);
    // K as dQ's MN-major operand: 16 keys = 2 core matrices along K (32 D bytes).
    const uint64_t kmn = wgmma_desc(kt, 16 * D, 128);
    wgmma_hold(af);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; kk++) {
      if constexpr (D == 128) wgmma_m64n128k16<kBF, true>(af, da[kk], kmn + uint64_t(2 * D * kk), 1);
      else wgmma_m64n64k16<kBF, true>(af, da[kk], kmn + uint64_t(2 * D * kk), 1);
    }
    wgmma_commit();
    wgmma_wait_all();
    wgmma_hold(af);
  }
  cp_async_wait<0>();

  flash_store_dq<D>(a.dq, s, h, a.Hq, a.Tq, tr, t0 + rows, acc, a.scale);
#else
  __trap();  // launched only where sm_90a machine code runs (flash_use_wgmma)
#endif
}

}  // namespace

template <int D, int DT>
void launch_flash_dq_wgmma(const FlashBwdArgs& a, int64_t qblocks) {
  constexpr size_t smem = dq_wg_smem<D>();
  static_assert(smem <= kMaxBlockSmem, "flash dQ: tiles past the shared-memory limit");
  allow_smem(flash_dq_wgmma_kernel<D, DT>, smem);
  flash_dq_wgmma_kernel<D, DT><<<unsigned(qblocks), kThreads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

template <int D, int DT>
void launch_flash_dkdv_wgmma(const FlashBwdArgs& a, int64_t kblocks) {
  constexpr size_t smem = dkdv_wg_smem<D>();
  static_assert(smem <= kMaxBlockSmem, "flash dK/dV: tiles past the shared-memory limit");
  allow_smem(flash_dkdv_wgmma_kernel<D, DT>, smem);
  flash_dkdv_wgmma_kernel<D, DT><<<unsigned(kblocks), kThreads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

template void launch_flash_dkdv_wgmma<64, kBF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dkdv_wgmma<64, kF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dkdv_wgmma<128, kBF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dkdv_wgmma<128, kF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dq_wgmma<64, kBF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dq_wgmma<64, kF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dq_wgmma<128, kBF16>(const FlashBwdArgs&, int64_t);
template void launch_flash_dq_wgmma<128, kF16>(const FlashBwdArgs&, int64_t);

}  // namespace topk::cuda
