// Full attention forward for prefill and training on warpgroup tensor cores (sm_90a; bf16 or
// f16 q, k, v with D 64 or 128): flash_forward.cu's algorithm with its two products as
// asynchronous warpgroup MMAs. A block of two warpgroups owns 128 query rows of one query head
// (64 rows a warpgroup, 16 a warp); 64-key K and V tiles stream through two shared-memory
// stages by cp.async, shared by both warpgroups. Per key tile and warpgroup:
//   S = Q K^T   64 x 64, Q and K both K-major operands in shared memory;
//   softmax     online, in the log2 domain, exactly as flash_forward.cu;
//   O += P V    64 x D, P rounded to the input dtype in registers, V as an MN-major B.
// Q, K and V tiles are stored as core matrices (load_tile_cm, flash.cuh): V is the second
// product's MN-major operand. (q as register fragments from ldmatrix, the mma.sync kernel's way,
// gave wrong scores at D = 64 on the H100 while D = 128 passed; both operands in shared memory,
// as the dQ kernel does, need no registers for q.) Causal tiles and empty rows as in
// flash_forward.cu. Runs only where TOPK_CUDA_FLASH_PATH=wgmma asks for it: on an H100 it is
// slower than the mma.sync kernel (flash_use_wgmma).
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"

namespace topk::cuda {

namespace {

constexpr int kBM = 128;  // query rows per block, 64 per warpgroup
constexpr int kBN = 64;   // keys per tile
constexpr int kThreads = 256;

// Q tile, then two stages of (K tile, V tile).
template <int D>
constexpr size_t wg_fwd_smem() { return size_t(kBM + 4 * kBN) * 2 * D; }

// Two blocks an SM at D = 64 (127 registers, no spills), so that one block's softmax overlaps
// the other's MMAs; at D = 128 the cap of 128 registers would spill, so one.
template <int D, int DT>
__global__ void __launch_bounds__(kThreads, D == 64 ? 2 : 1) flash_forward_wgmma_kernel(const FlashFwdArgs a) {
#if defined(TOPK_WGMMA)
  constexpr int kTileBytes = kBN * 2 * D;
  constexpr bool kBF = DT == kBF16;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sq = smem;                  // [kBM][D], core matrices
  unsigned char* skv = smem + kBM * 2 * D;   // [2][K, V][kBN][D], core matrices

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const FlashQTile qt = flash_q_tile(a.tiles, a.seqs, a.Hq, a.G, a.causal, a.k, a.v, kBM);
  const DSeq s = qt.s;
  const int h = qt.h, t0 = qt.t0, rows = qt.rows;
  const int64_t n_lo = qt.n_lo, n_hi = qt.n_hi;
  const int ntiles = int((n_hi + kBN - 1) / kBN);

  auto issue = [&](int i) {  // key tile i into stage i % 2
    flash_load_kv<D, kBN, kThreads, true>(skv + (i & 1) * 2 * kTileBytes, qt, a.k, a.v, i);
  };
  load_tile_cm<D, kBM, kThreads>(sq, a.q.data + a.q.offset(s.batch, s.q_start + t0, h) * 2,
                                 a.q.st * 2, rows);
  if (ntiles > 0) issue(0);
  cp_async_commit();

  // This lane's rows: 64 per warpgroup, 16 per warp (the warp's rank in its group: warp % 4).
  const int wrow = (warp >> 2) * 64 + (warp & 3) * 16;
  // The warpgroup's 64 query rows start at core-matrix row group 8 (warp / 4): 16 D bytes a group.
  const uint64_t qdesc = wgmma_desc(sq + (warp >> 2) * 128 * D, 128, 16 * D);
  const int tr = t0 + wrow + g;
  const int64_t nv0 = visible_keys(s, tr, a.causal), nv1 = visible_keys(s, tr + 8, a.causal);
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float(&of)[D / 2] = reinterpret_cast<float(&)[D / 2]>(o);
  float m0 = -INFINITY, m1 = -INFINITY;
  float l0 = 0.f, l1 = 0.f;
  float sc[kBN / 8][4] = {};  // the scores, then the weights, of a tile
  float(&sf)[kBN / 2] = reinterpret_cast<float(&)[kBN / 2]>(sc);

  for (int i = 0; i < ntiles; i++) {
    cp_async_wait<0>();
    fence_proxy_async();  // the copies' bytes, visible to the MMAs' reads
    __syncthreads();      // tile i is in, and both warpgroups are done with tile i - 1
    if (i + 1 < ntiles) issue(i + 1);
    cp_async_commit();
    const unsigned char* kt = skv + (i & 1) * 2 * kTileBytes;
    const unsigned char* vt = kt + kTileBytes;

    const uint64_t kdesc = wgmma_desc(kt, 128, 16 * D);
    wgmma_hold(sf);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)  // 16 dims = 2 core matrices along K: 256 bytes
      wgmma_m64n64k16_ss<kBF>(sf, qdesc + uint64_t(16 * ks), kdesc + uint64_t(16 * ks), ks > 0);
    wgmma_commit();
    wgmma_wait_all();
    wgmma_hold(sf);

    const int64_t j0 = int64_t(i) * kBN;
    flash_softmax_tile(sc, o, a.sl2, j0 + kBN > n_lo, j0, nv0, nv1, m0, m1, l0, l1);
    uint32_t pa[kBN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBN / 16; kk++) acc_to_a<DT>(pa[kk], sc[2 * kk], sc[2 * kk + 1]);
    // V: 16 keys = 2 core matrices along K, 32 D bytes; D along N, 128 bytes a core matrix.
    const uint64_t vdesc = wgmma_desc(vt, 16 * D, 128);
    wgmma_hold(of);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; kk++) {
      if constexpr (D == 128) wgmma_m64n128k16<kBF, true>(of, pa[kk], vdesc + uint64_t(2 * D * kk), 1);
      else wgmma_m64n64k16<kBF, true>(of, pa[kk], vdesc + uint64_t(2 * D * kk), 1);
    }
    wgmma_commit();
    wgmma_wait_all();
    wgmma_hold(of);
  }
  cp_async_wait<0>();

  flash_store_o<D>(a.dst, s, h, a.Hq, a.Tq, tr, t0 + rows, o, l0, l1, m0, m1);
#else
  __trap();  // launched only where sm_90a machine code runs (has_wgmma)
#endif
}

}  // namespace

template <int D, int DT>
void launch_flash_forward_wgmma(const FlashFwdArgs& a, int64_t blocks) {
  constexpr size_t smem = wg_fwd_smem<D>();
  static_assert(smem <= kMaxBlockSmem, "flash forward: tiles past the shared-memory limit");
  allow_smem(flash_forward_wgmma_kernel<D, DT>, smem);
  flash_forward_wgmma_kernel<D, DT><<<unsigned(blocks), kThreads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

template void launch_flash_forward_wgmma<64, kBF16>(const FlashFwdArgs&, int64_t);
template void launch_flash_forward_wgmma<64, kF16>(const FlashFwdArgs&, int64_t);
template void launch_flash_forward_wgmma<128, kBF16>(const FlashFwdArgs&, int64_t);
template void launch_flash_forward_wgmma<128, kF16>(const FlashFwdArgs&, int64_t);

}  // namespace topk::cuda
