// Full attention forward for prefill and training on warpgroup tensor cores (sm_90a; bf16 or
// f16 q, k, v with D 64 or 128): flash_forward.cu's algorithm with its two products as
// asynchronous warpgroup MMAs. A block of two warpgroups owns 128 query rows of one query head
// (64 rows a warpgroup, 16 a warp); 64-key K and V tiles stream through two shared-memory
// stages by cp.async, shared by both warpgroups. Per key tile and warpgroup:
//   S = Q K^T   64 x 64, q from registers (ldmatrix fragments of the swizzled Q tile), K as a
//               K-major B in shared memory;
//   softmax     online, in the log2 domain, exactly as flash_forward.cu;
//   O += P V    64 x D, P rounded to the input dtype in registers, V as an MN-major B.
// K and V tiles are stored as core matrices (load_tile_cm, flash.cuh): K is the first product's
// K-major operand, V the second's MN-major one. Causal tiles and empty rows as in
// flash_forward.cu. TOPK_CUDA_FLASH_PATH=mma forces that kernel (flash_use_wgmma).
#include <cmath>
#include <vector>

#include "attention/cuda/common.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"

namespace topk::cuda {

namespace {

constexpr int kBM = 128;  // query rows per block, 64 per warpgroup
constexpr int kBN = 64;   // keys per tile
constexpr int kThreads = 256;

struct FlashWgArgs {
  const DSeq* seqs;
  const FlashTile* tiles;  // [tiles], query tiles of kBM rows
  int Hq, G;
  float sl2;  // scale * log2(e)
  bool causal;
  DRows q, k, v;  // q [B, Tq, Hq, D]; k, v [B, Smax, Hkv, D]; 16-bit, 16-byte aligned rows
  DOut dst;       // o [B, Tq, Hq, D], lse [B, Tq, Hq]
  int64_t Tq;
};

// Q tile, then two stages of (K tile, V tile).
template <int D>
constexpr size_t wg_fwd_smem() { return size_t(kBM + 4 * kBN) * 2 * D; }

template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_forward_wgmma_kernel(const FlashWgArgs a) {
#if defined(TOPK_WGMMA)
  constexpr int kTileBytes = kBN * 2 * D;
  constexpr bool kBF = DT == kBF16;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sq = smem;                  // [kBM][D], swizzled rows (ldmatrix)
  unsigned char* skv = smem + kBM * 2 * D;   // [2][K, V][kBN][D], core matrices

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c2 = (lane & 3) * 2;
  const FlashTile tile = a.tiles[blockIdx.x / a.Hq];
  const int h = int(blockIdx.x % a.Hq), kvh = h / a.G;
  const DSeq s = a.seqs[tile.seq];
  const int t0 = tile.r0;
  const int rows = min(kBM, s.T - t0);
  const int64_t n_lo = visible_keys(s, t0, a.causal);
  const int64_t n_hi = visible_keys(s, t0 + rows - 1, a.causal);
  const int ntiles = int((n_hi + kBN - 1) / kBN);
  const char* ksrc = a.k.data + a.k.offset(s.batch, s.k_start, kvh) * 2;
  const char* vsrc = a.v.data + a.v.offset(s.batch, s.k_start, kvh) * 2;

  auto issue = [&](int i) {
    unsigned char* kt = skv + (i & 1) * 2 * kTileBytes;
    const int64_t j0 = int64_t(i) * kBN;
    const int valid = int(min(int64_t(kBN), n_hi - j0));
    load_tile_cm<D, kBN, kThreads>(kt, ksrc + j0 * a.k.st * 2, a.k.st * 2, valid);
    load_tile_cm<D, kBN, kThreads>(kt + kTileBytes, vsrc + j0 * a.v.st * 2, a.v.st * 2, valid);
  };
  load_tile<D, kBM, kThreads>(sq, a.q.data + a.q.offset(s.batch, s.q_start + t0, h) * 2,
                              a.q.st * 2, rows);
  if (ntiles > 0) issue(0);
  cp_async_commit();

  // This lane's rows: 64 per warpgroup, 16 per warp (the warp's rank in its group: warp % 4).
  const int wrow = (warp >> 2) * 64 + (warp & 3) * 16;
  const int tr = t0 + wrow + g;
  const int64_t nv0 = visible_keys(s, tr, a.causal), nv1 = visible_keys(s, tr + 8, a.causal);
  uint32_t qf[D / 16][4];
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
    if (i == 0) {
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++) ldmatrix_x4(qf[ks], frag_a<D>(sq, wrow, ks));
    }
    const unsigned char* kt = skv + (i & 1) * 2 * kTileBytes;
    const unsigned char* vt = kt + kTileBytes;

    const uint64_t kdesc = wgmma_desc(kt, 128, 16 * D);
    wgmma_hold(sf);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)  // 16 dims = 2 core matrices along K: 256 bytes
      wgmma_m64n64k16<kBF, false>(sf, qf[ks], kdesc + uint64_t(16 * ks), ks > 0);
    wgmma_commit();
    wgmma_wait_all();
    wgmma_hold(sf);

    const int64_t j0 = int64_t(i) * kBN;
    if (j0 + kBN > n_lo) {
#pragma unroll
      for (int n = 0; n < kBN / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          if (j0 + 8 * n + c2 + (e & 1) >= (e < 2 ? nv0 : nv1)) sc[n][e] = -INFINITY;
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int n = 0; n < kBN / 8; n++) {
      mx0 = fmaxf(mx0, fmaxf(sc[n][0], sc[n][1]));
      mx1 = fmaxf(mx1, fmaxf(sc[n][2], sc[n][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    const float mn0 = fmaxf(m0, mx0 * a.sl2), mn1 = fmaxf(m1, mx1 * a.sl2);
    const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
    const float al0 = ex2(m0 - mu0), al1 = ex2(m1 - mu1);
    m0 = mn0;
    m1 = mn1;
    float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
    for (int n = 0; n < kBN / 8; n++) {
      sc[n][0] = ex2(fmaf(sc[n][0], a.sl2, -mu0));
      sc[n][1] = ex2(fmaf(sc[n][1], a.sl2, -mu0));
      sc[n][2] = ex2(fmaf(sc[n][2], a.sl2, -mu1));
      sc[n][3] = ex2(fmaf(sc[n][3], a.sl2, -mu1));
      rs0 += sc[n][0] + sc[n][1];
      rs1 += sc[n][2] + sc[n][3];
    }
    l0 = l0 * al0 + rs0;
    l1 = l1 * al1 + rs1;
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      o[d][0] *= al0;
      o[d][1] *= al0;
      o[d][2] *= al1;
      o[d][3] *= al1;
    }
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

#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int t = tr + 8 * half;
    if (t >= t0 + rows) continue;
    const float l = half ? l1 : l0, m = half ? m1 : m0;
    const bool empty = !(l > 0.f);
    const float inv = empty ? 0.f : 1.f / l;
    const int64_t off = a.dst.offset(s.batch, s.q_start + t, h);
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      store1(a.dst.o, a.dst.dt, off + 8 * d + c2, o[d][2 * half] * inv);
      store1(a.dst.o, a.dst.dt, off + 8 * d + c2 + 1, o[d][2 * half + 1] * inv);
    }
    if ((lane & 3) == 0)
      a.dst.lse[(int64_t(s.batch) * a.Tq + s.q_start + t) * a.Hq + h] =
          empty ? INFINITY : m * 0.69314718055994531f + logf(l);
  }
#else
  __trap();  // launched only where sm_90a machine code runs (has_wgmma)
#endif
}

template <int D, int DT>
void run(const FlashWgArgs& a, int64_t blocks) {
  constexpr size_t smem = wg_fwd_smem<D>();
  static_assert(smem <= kMaxBlockSmem, "flash forward: tiles past the shared-memory limit");
  allow_smem(flash_forward_wgmma_kernel<D, DT>, smem);
  flash_forward_wgmma_kernel<D, DT><<<unsigned(blocks), kThreads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

}  // namespace

bool launch_flash_forward_wgmma(const AttnParams& p, const SeqTable& st) {
  if (!flash_use_wgmma(p.D)) return false;
  FlashWgArgs a;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  if (a.q.dt == kF32 || a.k.dt != a.q.dt || a.v.dt != a.q.dt) return false;
  if (!rows_aligned(a.q) || !rows_aligned(a.k) || !rows_aligned(a.v)) return false;
  const std::vector<FlashTile> tiles = flash_tiles(p, kBM, false);
  if (tiles.empty()) return true;
  const int64_t blocks = int64_t(tiles.size()) * p.Hq;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "attention_forward: too many query tiles for one launch");
  a.seqs = st.d;
  a.tiles = static_cast<const FlashTile*>(
      upload_table(kTabFlashQ, tiles.data(), tiles.size() * sizeof(FlashTile)));
  a.Hq = p.Hq;
  a.G = p.group();
  a.sl2 = float(double(p.scale) * 1.4426950408889634);
  a.causal = p.causal;
  a.dst = dout(p);
  a.Tq = p.Tq;
  if (p.D == 64) {
    if (a.q.dt == kBF16) run<64, kBF16>(a, blocks);
    else run<64, kF16>(a, blocks);
  } else {
    if (a.q.dt == kBF16) run<128, kBF16>(a, blocks);
    else run<128, kF16>(a, blocks);
  }
  return true;
}

}  // namespace topk::cuda
