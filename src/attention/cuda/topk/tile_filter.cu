// The score passes of the filtered path of exact top-k prefill (topk/pipeline.cu): selection
// inside a tensor-core score pass, so that no score row is stored. A block owns a tile of 128
// query rows of one sequence and one query head (8 warps of 16 rows, m16n8k16 products of Q and
// 64-key K tiles through a three-stage cp.async ring, two blocks an SM up to D = 128):
//   sample      scores the keys of one group of 8 consecutive keys in every 128 of the
//               competing range (a 16th; the same keys for every row of the tile, so the
//               products share their K tiles) into each row's sample row;
//   thresholds  a warp per (row, head) takes tau, the sample_rank-th largest sampled key to 16
//               bits, the rule of the warp select over stored rows (a kernel of its own: inside
//               the sample pass each warp waited on 16 rows' global reads one after another);
//   filter      scores every competing key and appends those at or above key_floor(tau) to the
//               row's candidate list in index order: per row and key tile, the four lanes that
//               hold the row's 64 scores OR their pass bits into one 64-bit mask, and each kept
//               key's slot is the count of kept keys before it. The pass test compares the raw
//               products with the least raw score that scales to the floor, and only kept keys
//               compute a slot: this pass is bound by its instructions, not by its products.
// The warp select's candidate mode then selects exactly among the candidates and attends
// (topk/stored_select_attend_warps.cu). A row of at most `cap` competing keys keeps them all
// (tau = 0); a row whose list ends with fewer keys than its budget, or more than cap (then
// only the first cap are stored), is selected there from scores computed again.
#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/topk/warp_kth.cuh"

namespace topk::cuda {

namespace {

constexpr int kBM = 128;  // query rows per block
constexpr int kBN = 64;   // keys per tile
constexpr int kThreads = 256;
constexpr int kStages = 3;  // K tiles in the ring: two in flight while one is scored

// Sampled key j of a row, counted from the row's first competing key: group j / 8 of 8
// consecutive keys, one group every 128 keys.
__device__ __forceinline__ int sample_pos(int j) { return (j >> 3) * 128 + (j & 7); }

// Sampled keys of a row of m competing keys.
__host__ __device__ inline int64_t sample_count(int64_t m) {
  return (m >> 7) * 8 + ((m & 127) < 8 ? (m & 127) : 8);
}

struct TileArgs {
  const DSeq* seqs;
  const FlashTile* tiles;  // this launch's query tiles
  int64_t r0;              // compact row whose (row, head) pairs start the buffers
  int Hq, G;
  float scale;
  bool causal;
  DRows q, k;
  SelectOpts sel;
  int64_t cap, pitch;  // candidate slots, sampled scores per (row, head)
  float* samp;         // [rows, Hq, pitch]
  uint32_t* tau;       // [rows, Hq]
  uint2* cand;         // [rows, Hq, cap]: (score bits, key index)
  int* cnt;            // [rows, Hq]
};

// Whether a row is sampled: it selects some but not all of its competing keys, and they are
// more than its candidate list holds.
__device__ __forceinline__ bool row_sampled(const RowSel& rs, int64_t cap) {
  return rs.take > 0 && rs.take < rs.m && rs.m > cap;
}

// Bits 0 .. n - 1 of a 64-bit mask (none for n <= 0, all for n >= 64).
__device__ __forceinline__ uint64_t bits_below(int n) {
  return n <= 0 ? 0 : n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
}

template <int D, int DT, bool SAMPLE>
__global__ void __launch_bounds__(kThreads, 2) tile_scores_kernel(const TileArgs a) {
  constexpr int kTileBytes = kBN * 2 * D;
  constexpr bool kQRegs = D <= 128;  // q fragments in registers (else read per k-step)
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sq = smem;                // [kBM][D]
  unsigned char* sk = smem + kBM * 2 * D;  // [kStages][kBN][D]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, quad = lane & 3;
  const FlashQTile qt = flash_q_tile(a.tiles, a.seqs, a.Hq, a.G, a.causal, a.k, a.k, kBM);
  const DSeq s = qt.s;
  const int h = qt.h, t0 = qt.t0, t_end = t0 + qt.rows;
  const SelectOpts& sel = a.sel;
  // The tile's last row sees the most keys; every row with competing keys starts at its lo.
  const RowSel last = row_sel(sel.k, sel.ratio, sel.min_k, sel.sink, sel.window, qt.n_hi);
  const int lo = int(last.lo);
  const int nkeys = SAMPLE ? (last.m > a.cap ? int(sample_count(last.m)) : 0) : int(last.hi);
  const int ntiles = (nkeys + kBN - 1) / kBN;

  const char* kb = qt.k;
  const int64_t kst = a.k.st * 2;
  auto issue = [&](int i) {  // key tile i into stage i % kStages; slots past nkeys zeroed
    unsigned char* dst = sk + (i % kStages) * kTileBytes;
    constexpr int cpr = D / 8;
    for (int e = tid; e < kBN * cpr; e += kThreads) {
      const int row = e / cpr, c = e % cpr;
      unsigned char* d = dst + row * (2 * D) + swizzled_chunk(row, c) * 16;
      const int j = i * kBN + row;
      const int pos = SAMPLE ? lo + sample_pos(j) : j;
      if (j < nkeys) cp_async16(d, kb + pos * kst + c * 16);
      else *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
    }
  };
  load_tile<D, kBM, kThreads>(sq, a.q.data + a.q.offset(s.batch, s.q_start + t0, h) * 2,
                              a.q.st * 2, qt.rows);
  for (int st = 0; st < kStages - 1; st++) {
    if (st < ntiles) issue(st);
    cp_async_commit();
  }

  // This lane's rows g and g + 8 of its warp's 16: their pairs, competing keys, and (sample)
  // sample lengths or (filter) thresholds and candidate counts.
  int64_t pair[2];
  int rlo[2], rhi[2], ns[2], count[2] = {0, 0};
  float fraw[2];  // (filter) the least unscaled score that reaches the threshold
  bool all[2];
#pragma unroll
  for (int e = 0; e < 2; e++) {
    const int tr = t0 + warp * 16 + g + 8 * e;
    const bool valid = tr < t_end;
    const RowSel rs = row_sel(sel.k, sel.ratio, sel.min_k, sel.sink, sel.window,
                              visible_keys(s, tr, a.causal));
    pair[e] = (int64_t(s.r0) + tr - a.r0) * a.Hq + h;
    rlo[e] = int(rs.lo);
    rhi[e] = valid && rs.take > 0 ? int(rs.hi) : int(rs.lo);  // an empty range keeps nothing
    ns[e] = valid && row_sampled(rs, a.cap) ? int(sample_count(rs.m)) : 0;
    fraw[e] = 0.f;
    all[e] = false;
    if constexpr (!SAMPLE) {
      const uint32_t tau = valid ? a.tau[pair[e]] : 0xffffffffu;
      fraw[e] = unscaled_floor(key_floor(tau), a.scale);
      all[e] = tau == 0u;  // NaN scores (key 0) pass too
    }
  }

  uint32_t qf[kQRegs ? D / 16 : 1][4];
  for (int i = 0; i < ntiles; i++) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile i is in for every thread, and every warp is done with tile i - 1
    if (i + kStages - 1 < ntiles) issue(i + kStages - 1);  // into tile i - 1's stage
    cp_async_commit();
    if constexpr (kQRegs) {
      if (i == 0) {
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) ldmatrix_x4(qf[ks], frag_a<D>(sq, warp * 16, ks));
      }
    }
    const unsigned char* kt = sk + (i % kStages) * kTileBytes;
    float sc[kBN / 8][4];
#pragma unroll
    for (int n = 0; n < kBN / 8; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
      if constexpr (!kQRegs) ldmatrix_x4(qf[0], frag_a<D>(sq, warp * 16, ks));
      mma_rows_kstep<D, DT, kBN>(sc, qf[kQRegs ? ks : 0], kt, ks);
    }
    // The lane holds scores of keys 8 nb + 2 quad + c of the tile (c = 0, 1), for its row g
    // in sc[nb][c] and row g + 8 in sc[nb][2 + c].
    const int j0 = i * kBN;
#pragma unroll
    for (int e = 0; e < 2; e++) {
      if constexpr (SAMPLE) {
        float* row = a.samp + pair[e] * a.pitch;
#pragma unroll
        for (int nb = 0; nb < kBN / 8; nb++)
#pragma unroll
          for (int c = 0; c < 2; c++) {
            const int j = j0 + 8 * nb + 2 * quad + c;
            if (j < ns[e]) row[j] = sc[nb][2 * e + c] * a.scale;
          }
      } else {
        // Pass bits of the row's 64 keys, bit = column: this lane's keys 8 nb + 2 quad + c go
        // to bits 8 nb + c (constant shifts), then move by 2 quad; the competing range masks
        // them, and the row's four lanes OR theirs.
        uint32_t olo = 0, ohi = 0;
#pragma unroll
        for (int nb = 0; nb < kBN / 8; nb++)
#pragma unroll
          for (int c = 0; c < 2; c++) {
            const uint32_t bit = uint32_t(sc[nb][2 * e + c] >= fraw[e]) << (8 * (nb & 3) + c);
            if (nb < 4) olo |= bit;
            else ohi |= bit;
          }
        if (all[e]) olo = ohi = 0x03030303u;
        const uint64_t mine = ((uint64_t(ohi) << 32 | olo) << (2 * quad)) &
                              bits_below(rhi[e] - j0) & ~bits_below(rlo[e] - j0);
        uint64_t full = mine | __shfl_xor_sync(kFull, mine, 1);
        full |= __shfl_xor_sync(kFull, full, 2);
        if (full) {  // the same in the row's four lanes
          if (mine) {
            // Key (nb, c)'s slot: the row's kept keys before column 2 quad, then those of fs
            // (full from column 2 quad on) below bit 8 nb + c.
            uint2* list = a.cand + pair[e] * a.cap;
            const uint64_t fs = full >> (2 * quad), my = mine >> (2 * quad);
            const int base = count[e] + __popcll(full & ((uint64_t(1) << (2 * quad)) - 1));
#pragma unroll
            for (int nb = 0; nb < kBN / 8; nb++)
              if ((my >> (8 * nb)) & 3u)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                  const int bit = 8 * nb + c;
                  const int slot = base + __popcll(fs & ((uint64_t(1) << bit) - 1));
                  if ((my >> bit & 1u) && slot < a.cap)
                    list[slot] = make_uint2(__float_as_uint(sc[nb][2 * e + c] * a.scale),
                                            uint32_t(j0 + 8 * nb + 2 * quad + c));
                }
          }
          count[e] += __popcll(full);
        }
      }
    }
  }
  cp_async_wait<0>();

  if constexpr (!SAMPLE) {
#pragma unroll
    for (int e = 0; e < 2; e++)
      if (quad == 0 && t0 + warp * 16 + g + 8 * e < t_end) a.cnt[pair[e]] = count[e];
  }
}

// Thresholds from the sampled rows, a warp per (row, head) pair, so that the reads of many rows
// are in flight at once.
__global__ void __launch_bounds__(kThreads) tile_thresholds_kernel(const TileArgs a, int nseq,
                                                                   int64_t pairs) {
  __shared__ int hist[kThreads / 32][256];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t pr = int64_t(blockIdx.x) * (kThreads / 32) + warp;
  if (pr >= pairs) return;
  const int64_t r = a.r0 + pr / a.Hq;
  const DSeq s = a.seqs[seq_of_row(a.seqs, nseq, r)];
  const SelectOpts& sel = a.sel;
  const RowSel rs = row_sel(sel.k, sel.ratio, sel.min_k, sel.sink, sel.window,
                            visible_keys(s, r - s.r0, a.causal));
  uint32_t tau = rs.take == 0 ? 0xffffffffu : 0u;  // none of the row, or all of it
  if (row_sampled(rs, a.cap)) {
    const int n = int(sample_count(rs.m));
    const int rk = sample_rank(int(rs.take), n, int(rs.m));
    if (rk < n) {
      const float* row = a.samp + pr * a.pitch;
      int unused;
      warp_kth<4>([&](int i) { return order_key(row[i]); }, n, rk, 2, hist[warp], tau, unused);
    }
  }
  if (lane == 0) a.tau[pr] = tau;
}

template <bool SAMPLE>
void run_tiles(const AttnParams& p, const TileArgs& a, int64_t ntiles) {
  const int64_t blocks = ntiles * p.Hq;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_attention_forward: too many query tiles for one launch");
  if (blocks == 0) return;
  const bool bf16 = a.q.dt == kBF16;
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "topk_attention_forward", {
    constexpr size_t smem = size_t(kBM + kStages * kBN) * 2 * kD;
    static_assert(smem <= kMaxBlockSmem, "tile scores: tiles past the shared-memory limit");
    auto kernel = bf16 ? tile_scores_kernel<kD, kBF16, SAMPLE> : tile_scores_kernel<kD, kF16, SAMPLE>;
    allow_smem(kernel, smem);
    kernel<<<unsigned(blocks), kThreads, smem, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
  });
}

TileArgs tile_args(const AttnParams& p, const SeqTable& st, const void* tiles, int64_t r0,
                   const SelectOpts& sel, int64_t cap) {
  TOPK_CHECK(tile_filter_fits(p), "topk_attention_forward: the filtered path needs 16-bit q and k "
             "of one dtype with aligned rows");
  TileArgs a;
  a.seqs = st.d;
  a.tiles = static_cast<const FlashTile*>(tiles);
  a.r0 = r0;
  a.Hq = p.Hq;
  a.G = p.group();
  a.scale = p.scale;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.sel = sel;
  a.cap = cap;
  a.pitch = 0;
  a.samp = nullptr;
  a.tau = nullptr;
  a.cand = nullptr;
  a.cnt = nullptr;
  return a;
}

}  // namespace

bool tile_filter_fits(const AttnParams& p) {
  const DRows q = drows(p.q), k = drows(p.k);
  return (q.dt == kBF16 || q.dt == kF16) && k.dt == q.dt && rows_aligned(q) && rows_aligned(k) &&
         (p.D == 64 || p.D == 128 || p.D == 256) && p.Smax < (int64_t(1) << 30);
}

int64_t tile_sample_count(int64_t m) { return sample_count(m); }

void launch_tile_sample(const AttnParams& p, const SeqTable& st, const void* tiles, int64_t ntiles,
                        int64_t r0, int64_t rows, const SelectOpts& sel, int64_t cap, float* samp,
                        int64_t pitch, uint32_t* tau) {
  TileArgs a = tile_args(p, st, tiles, r0, sel, cap);
  a.samp = samp;
  a.pitch = pitch;
  a.tau = tau;
  run_tiles<true>(p, a, ntiles);
  const int64_t pairs = rows * p.Hq, blocks = (pairs + kThreads / 32 - 1) / (kThreads / 32);
  if (blocks == 0) return;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_attention_forward: too many rows for one launch");
  tile_thresholds_kernel<<<unsigned(blocks), kThreads, 0, stream()>>>(a, st.n, pairs);
  TOPK_CUDA_LAUNCH();
}

void launch_tile_filter(const AttnParams& p, const SeqTable& st, const void* tiles, int64_t ntiles,
                        int64_t r0, const SelectOpts& sel, const uint32_t* tau, uint32_t* cand,
                        int* cnt, int64_t cap) {
  TileArgs a = tile_args(p, st, tiles, r0, sel, cap);
  a.tau = const_cast<uint32_t*>(tau);
  a.cand = reinterpret_cast<uint2*>(cand);
  a.cnt = cnt;
  run_tiles<false>(p, a, ntiles);
}

}  // namespace topk::cuda
