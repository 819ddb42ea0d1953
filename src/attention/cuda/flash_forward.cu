// Full attention forward for prefill and training (many query rows), FlashAttention-2 style,
// on tensor cores for bf16 or f16 q, k, v with D 64, 128 or 256. A block owns a tile of 128
// query rows of one query head (8 warps, 16 rows each); 64-key K and V tiles of the head's KV
// head stream through two shared-memory stages (the next tile's cp.async runs while this one
// is multiplied). Up to D = 128 each warp keeps its q fragments in registers; at D = 256 they
// (64 registers) would not fit beside the O accumulators (128) and the scores, so every k-step
// reads them from the Q tile again (192 KiB of shared memory: Q 64, two stages of K, V 128).
// Per key tile and warp:
//   S = Q K^T        m16n8k16, fp32 accumulators;
//   online softmax   running max and sum per row in the log2 domain (scale * log2 e folded in);
//   O += P V         P rounded to the input dtype, as FlashAttention does (the row sums use the
//                    fp32 P, so lse is exact to fp32 rounding).
// Causal: a tile reads only the keys its last row sees, and masks only the key tiles past what
// its first row sees. Rows that see no key get o = 0 and lse = +inf. Tiles go longest first.
#include <cmath>
#include <vector>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kBM = 128;  // query rows per block
constexpr int kBN = 64;   // keys per tile
constexpr int kThreads = 256;

// Q tile, then two stages of (K tile, V tile).
template <int D>
constexpr size_t fwd_smem() { return size_t(kBM + 4 * kBN) * 2 * D; }

template <int D, int DT>
__global__ void __launch_bounds__(kThreads, 1) flash_forward_kernel(const FlashFwdArgs a) {
  constexpr int kTileBytes = kBN * 2 * D;
  constexpr bool kQRegs = D <= 128;  // q fragments in registers (else read per k-step)
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sq = smem;                  // [kBM][D]
  unsigned char* skv = smem + kBM * 2 * D;   // [2][K, V][kBN][D]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;  // fragment row
  const FlashQTile qt = flash_q_tile(a.tiles, a.seqs, a.Hq, a.G, a.causal, a.k, a.v, kBM);
  const DSeq s = qt.s;
  const int h = qt.h, t0 = qt.t0, rows = qt.rows;
  const int64_t n_lo = qt.n_lo, n_hi = qt.n_hi;
  const int ntiles = int((n_hi + kBN - 1) / kBN);

  auto issue = [&](int i) {  // key tile i into stage i % 2; rows past n_hi zeroed
    flash_load_kv<D, kBN, kThreads, false>(skv + (i & 1) * 2 * kTileBytes, qt, a.k, a.v, i);
  };
  load_tile<D, kBM, kThreads>(sq, a.q.data + a.q.offset(s.batch, s.q_start + t0, h) * 2,
                              a.q.st * 2, rows);
  if (ntiles > 0) issue(0);
  cp_async_commit();

  // This lane's rows of the tile: 16 warp + g and + 8; the keys each sees (for masked tiles).
  const int tr = t0 + warp * 16 + g;
  const int64_t nv0 = visible_keys(s, tr, a.causal), nv1 = visible_keys(s, tr + 8, a.causal);
  uint32_t qf[kQRegs ? D / 16 : 1][4];
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max of scale * log2 e * s, rows g, g + 8
  float l0 = 0.f, l1 = 0.f;              // this lane's part of the running sums

  for (int i = 0; i < ntiles; i++) {
    cp_async_wait<0>();
    __syncthreads();  // tile i is in for every thread, and every warp is done with tile i - 1
    if (i + 1 < ntiles) issue(i + 1);  // into the stage tile i - 1 used
    cp_async_commit();
    if constexpr (kQRegs) {
      if (i == 0) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) ldmatrix_x4(qf[ks], frag_a<D>(sq, warp * 16, ks));
      }
    }
    const unsigned char* kt = skv + (i & 1) * 2 * kTileBytes;
    const unsigned char* vt = kt + kTileBytes;

    float sc[kBN / 8][4];
#pragma unroll
    for (int n = 0; n < kBN / 8; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
      if constexpr (!kQRegs) ldmatrix_x4(qf[0], frag_a<D>(sq, warp * 16, ks));
      mma_rows_kstep<D, DT, kBN>(sc, qf[kQRegs ? ks : 0], kt, ks);
    }
    // Online softmax; the four lanes of a row (same g) hold its 64 scores.
    const int64_t j0 = int64_t(i) * kBN;
    flash_softmax_tile(sc, o, a.sl2, j0 + kBN > n_lo, j0, nv0, nv1, m0, m1, l0, l1);
#pragma unroll
    for (int kk = 0; kk < kBN / 16; kk++) {
      uint32_t pa[4];
      acc_to_a<DT>(pa, sc[2 * kk], sc[2 * kk + 1]);
#pragma unroll
      for (int dp = 0; dp < D / 16; dp++) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, frag_a<D>(vt, kk * 16, dp));
        mma16<DT>(o[2 * dp], pa, b[0], b[1]);
        mma16<DT>(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
  }
  cp_async_wait<0>();

  flash_store_o<D>(a.dst, s, h, a.Hq, a.Tq, tr, t0 + rows, o, l0, l1, m0, m1);
}

template <int D, int DT>
void run_flash_forward(const FlashFwdArgs& a, int64_t blocks) {
  constexpr size_t smem = fwd_smem<D>();
  static_assert(smem <= kMaxBlockSmem, "flash forward: tiles past the shared-memory limit");
  allow_smem(flash_forward_kernel<D, DT>, smem);
  flash_forward_kernel<D, DT><<<unsigned(blocks), kThreads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

}  // namespace

bool launch_flash_forward(const AttnParams& p, const SeqTable& st) {
  FlashFwdArgs a;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  if (a.q.dt == kF32 || a.k.dt != a.q.dt || a.v.dt != a.q.dt) return false;
  if (p.D != 64 && p.D != 128 && p.D != 256) return false;
  if (!rows_aligned(a.q) || !rows_aligned(a.k) || !rows_aligned(a.v)) return false;
  const std::vector<FlashTile> tiles = flash_tiles(p, kBM, false);
  if (tiles.empty()) return true;  // no query rows
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
  if (flash_use_wgmma(p.D, false)) {
    if (p.D == 64) {
      if (a.q.dt == kBF16) launch_flash_forward_wgmma<64, kBF16>(a, blocks);
      else launch_flash_forward_wgmma<64, kF16>(a, blocks);
    } else {
      if (a.q.dt == kBF16) launch_flash_forward_wgmma<128, kBF16>(a, blocks);
      else launch_flash_forward_wgmma<128, kF16>(a, blocks);
    }
    return true;
  }
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "attention_forward",
      if (a.q.dt == kBF16) run_flash_forward<kD, kBF16>(a, blocks);
      else run_flash_forward<kD, kF16>(a, blocks));
  return true;
}

}  // namespace topk::cuda
