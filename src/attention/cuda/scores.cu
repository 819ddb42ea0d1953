// Exact scores scale * q.k. One persistent grid walks (row, KV head, head slice, key tile)
// units in contiguous ranges; each K tile streams through a shared-memory ring and is read
// once for all the heads of its group (up to HB per slice). bf16 K is multiplied on tensor
// cores (keys x dims times dims x heads, q split into bf16 parts so that no precision is
// lost); other dtypes with fp32 FMAs and a reduction across lanes. Then
// either every score is written with coalesced stores (attention_scores, the general top-k
// pipeline), or, for the threshold path of top-k decode (topk/threshold.h), only the candidates:
// competing keys whose score reaches the row's threshold are appended to the row's list, and
// the forced keys' scores go straight to their slots of the selection.
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "attention/cuda/reduce.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/topk/threshold.h"

namespace topk::cuda {

namespace {

struct ScoreArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0, nrows;
  int Hq, Hkv, G, nslice;
  int64_t Smax, tiles, units;
  float scale;
  bool causal, kvec, ovec, fill_tail, out_compact;
  DRows q, k;
  float* out;
  int64_t Tq;
  // Threshold path (FILTER): thresholds and candidate counts [rows, Hq], candidate lists
  // [rows, Hq, cap] of (key, index), scores of the selection [rows, Hq, K].
  SelectOpts sel;
  const uint32_t* thr;
  int* cnt;
  uint2* cand;
  int64_t cap, K;
  float* sel_scores;
  int* done;  // key tiles scored per item [items]
  // K is read once: its tiles go through L2 with an evict-first hint, so that they do not
  // push out what is read again soon (top-k decode's score rows, candidates, chosen V rows).
  // On a 2 GB pass that only writes scores the hint measured 2% slower; top-k decode gains.
  bool k_evict_first;
};

constexpr int kThreads = 256;

// Candidates of the FILTER pass are staged per warp in shared memory and appended to the
// row's list in batches: reserving list slots is an atomic whose result the warp must wait
// for, and one per tile stalled the K stream by ~20%.
constexpr int kStage = 128;

// Rows of the block's score tile, padded so that the tensor-core fragment stores (4 heads of
// a key in one bank otherwise) are conflict-free.
constexpr int kScPitch = kTile + 4;


// Appends a warp's staged candidates to list row hrow and empties the stage.
__device__ __forceinline__ void flush_stage(const ScoreArgs& a, uint2* stage, int& staged,
                                            int64_t hrow) {
  if (staged == 0) return;
  const int lane = threadIdx.x & 31;
  int base = 0;
  if (lane == 0) base = atomicAdd(&a.cnt[hrow], staged);
  base = __shfl_sync(0xffffffffu, base, 0);
  uint2* list = a.cand + hrow * a.cap;
  for (int i = lane; i < staged; i += 32)
    if (base + i < a.cap) list[base + i] = stage[i];
  __syncwarp();
  staged = 0;
}

// FILTER: the block has scored `units` tiles of `item` and appended their candidates; after
// every thread's writes (barrier, then a fence: the usual release), count them in done.
__device__ __forceinline__ void item_scored(const ScoreArgs& a, int64_t item, int units) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(&a.done[item], units);
  }
}

// The candidates of one scored tile (FILTER), for head w of the slice (list row hrow): the
// forced keys' scores go to their slots of the selection, competing keys at or above the
// threshold to the warp's stage.
__device__ __forceinline__ void filter_tile(const ScoreArgs& a, const float* tile, int w,
                                            int64_t hrow, int64_t tile0, int64_t n,
                                            const RowSel& rs, uint32_t thr, uint2* stage,
                                            int& staged) {
  const int lane = threadIdx.x & 31;
  constexpr int kPer = kTile / 32;
  uint32_t key[kPer], mask[kPer];
  int total = 0;
#pragma unroll
  for (int i = 0; i < kPer; i++) {
    const int c = lane + 32 * i;
    const int64_t j = tile0 + c;
    const float x = tile[w * kScPitch + c];
    key[i] = order_key(x);
    bool cand = j >= rs.lo && j < rs.hi && key[i] >= thr;
    if (j < rs.lo) a.sel_scores[hrow * a.K + j] = x;
    else if (j >= rs.hi && j < n) a.sel_scores[hrow * a.K + rs.lo + rs.take + (j - rs.hi)] = x;
    mask[i] = __ballot_sync(0xffffffffu, cand);
    total += __popc(mask[i]);
  }
  if (total == 0) return;
  if (staged + total > kStage) flush_stage(a, stage, staged, hrow);
  const uint32_t below = (1u << lane) - 1;
#pragma unroll
  for (int i = 0; i < kPer; i++) {
    if (mask[i] >> lane & 1u)
      stage[staged + __popc(mask[i] & below)] = make_uint2(key[i], uint32_t(tile0 + lane + 32 * i));
    staged += __popc(mask[i]);
  }
  __syncwarp();
}

// K tiles stream through a ring of NS shared-memory stages, NS - 1 tiles ahead of the tile
// being scored, so the loads of a block never stop for its arithmetic, barriers or stores;
// with one stage (f32 K at D = 256, whose tile is 128 KiB) each tile is loaded, then scored.
// MMA: bf16 K on tensor cores, ring rows swizzled (common.cuh); else FMAs (any dtype).
// At D = 256 the ring (two 16-bit stages or one f32 stage, 128 KiB) leaves room for one block
// per SM, so the kernel may take all of its registers: q's tensor-core fragments alone are 96.
template <int D, int HB, bool FILTER, int NS, bool MMA>
__global__ void __launch_bounds__(kThreads, D >= 256 ? 1 : 2) scores_kernel(const ScoreArgs a) {
  constexpr int TPR = D / 8;              // FMA: threads per key row
  constexpr int SLOTS = kThreads / TPR;   // FMA: key rows per step
  constexpr int KPT = kTile / SLOTS;      // FMA: keys per thread per tile
  // FMA: keys per dot batch. At D = 256 a batch of NB = TPR products, the fewest that one
  // reduce_scatter takes: the rule of 64 and 128 would hold 64, for the same shuffles a key.
  constexpr int KB = D >= 256 ? TPR / HB : HB >= 8 ? KPT / 2 : KPT;
  constexpr int NB = KB * HB;
  static_assert(NB >= TPR, "reduce_scatter needs NB >= TPR");
  static_assert(KPT % KB == 0, "whole dot batches per tile");
  static_assert(!MMA || kThreads / 32 * 16 == kTile, "MMA: one 16-key slab of the tile per warp");
  extern __shared__ __align__(16) unsigned char kring[];  // [NS][kTile][rowb], MMA: swizzled
  __shared__ __align__(16) float sc[2][HB][kScPitch];
  __shared__ uint2 stage[FILTER ? HB : 1][FILTER ? kStage : 1];
  // One stage of the widest K this kernel reads (bf16 for MMA, f32 for FMA) must fit beside
  // the static buffers; run_ring picks how many do.
  static_assert(sizeof(sc) + sizeof(stage) + size_t(kTile) * D * (MMA ? 2 : 4) <= kMaxBlockSmem,
                "a K tile fits in shared memory");

  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR, warp = tid / 32, lane = tid & 31;
  const int esize = a.k.esize;
  const int rowb = D * esize;                          // bytes of a K row
  const int lg_cpr = esize == 4 ? ilog2(D / 4) : ilog2(D / 8);  // log2 of 16-byte chunks per row
  // The block's units [u0, u1), a contiguous share. A cursor holds a unit and its (item, tile),
  // advanced by counting: a 64-bit division per tile cost the stream a few percent.
  const int64_t u0 = int64_t(blockIdx.x) * a.units / gridDim.x;
  const int64_t u1 = int64_t(blockIdx.x + 1) * a.units / gridDim.x;
  struct Cursor {
    int64_t u, item, tile;
  };
  auto advance = [&](Cursor& c) {
    c.u++;
    if (++c.tile == a.tiles) {
      c.tile = 0;
      c.item++;
    }
  };

  // Loads of the next unit in the issue sequence into stage i % NS (rows past the visible keys
  // are not read); a commit even with nothing to load keeps the group counts uniform.
  Cursor ic{u0, u0 / a.tiles, u0 % a.tiles};
  int64_t is_item = -1, is_kbase = 0, is_n = 0;
  const int rstep = kThreads >> lg_cpr;  // rows per pass of the copy loop
  const uint64_t kpolicy = a.k_evict_first ? l2_evict_first() : 0;
  auto issue = [&](int64_t i) {
    if (ic.u < u1) {
      if (ic.item != is_item) {
        is_item = ic.item;
        const int64_t rr = is_item / (a.Hkv * a.nslice);
        const int kv = int(is_item % (a.Hkv * a.nslice)) / a.nslice;
        const int64_t r = a.r0 + rr;
        const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
        is_n = visible_keys(s, r - s.r0, a.causal);
        is_kbase = int64_t(s.batch) * a.k.sb + int64_t(s.k_start) * a.k.st + int64_t(kv) * a.k.sh;
      }
      const int64_t tile0 = ic.tile * kTile;
      const int64_t left = is_n - tile0;
      const int rows = left <= 0 ? 0 : (left < kTile ? int(left) : kTile);
      unsigned char* dst = kring + (i % NS) * (kTile * rowb);
      const char* src = a.k.data + (is_kbase + tile0 * a.k.st) * esize;
      const int c = tid & ((1 << lg_cpr) - 1);
      const int64_t sstep = int64_t(rstep) * a.k.st * esize;
      const char* sp = src + int64_t(tid >> lg_cpr) * a.k.st * esize + c * 16;
      // A thread's rows share their swizzle: MMA tiles are bf16 rows of at most 32 chunks
      // (D <= 256), so rstep = kThreads / chunks per row is a multiple of 8.
      const int dc = MMA ? swizzled_chunk(tid >> lg_cpr, c) : c;
      unsigned char* dp = dst + (tid >> lg_cpr) * rowb + dc * 16;
      for (int r = tid >> lg_cpr; r < rows; r += rstep, sp += sstep, dp += rstep * rowb)
        copy16(dp, sp, a.kvec, esize, kpolicy);
      advance(ic);
    }
    cp_async_commit();
  };

  Cursor cc = ic;
  int64_t cur_item = -1;
  float qv[MMA ? 1 : HB][8];
  uint32_t qb[MMA ? 3 : 1][MMA ? D / 16 : 1][2];  // MMA: q as B fragments, one per bf16 part
  const int qparts = a.q.dt == kBF16 ? 1 : a.q.dt == kF16 ? 2 : 3;
  int64_t n = 0, orow = 0;
  int h0 = 0, nh = 0;
  int buf = 0;
  RowSel rs{};
  uint32_t thr = 0;     // FILTER: the threshold of head h0 + warp
  int staged = 0;       // FILTER: candidates in this warp's stage
  int64_t hrow = 0;     // FILTER: the list row of head h0 + warp
  int item_units = 0;   // FILTER: tiles of cur_item scored by this block
  // The next kernel may be scheduled onto SMs as soon as this pass's blocks leave them:
  // select-and-attend waits for its item's count in done (FILTER), the general path's
  // select-and-attend for the whole pass (griddepcontrol.wait).
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  for (int i = 0; i < NS - 1; i++) issue(i);
  for (int64_t step = 0; cc.u < u1; step++) {
    if constexpr (NS == 1) {
      // The one stage is free: every thread that read it last passed the barrier after its
      // scoring (a tile past the visible keys is never read).
      issue(step);
      cp_async_wait<0>();
      __syncthreads();  // this step's tile is in
    } else {
      cp_async_wait<NS - 2>();
      __syncthreads();  // this step's tile is in; every thread is done with the previous stage
      issue(step + NS - 1);
    }
    const int64_t item = cc.item;
    const int64_t tile0 = cc.tile * kTile;
    advance(cc);
    if (item != cur_item) {
      if constexpr (FILTER) {
        if (warp < nh) flush_stage(a, stage[warp], staged, hrow);
        if (cur_item >= 0) item_scored(a, cur_item, item_units);
        item_units = 0;
      }
      cur_item = item;
      int64_t rr = item / (a.Hkv * a.nslice);
      int rest = int(item % (a.Hkv * a.nslice));
      int kvh = rest / a.nslice;
      int slice = rest % a.nslice;
      int64_t r = a.r0 + rr;
      const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
      int64_t t = r - s.r0;
      n = visible_keys(s, t, a.causal);
      h0 = kvh * a.G + slice * HB;
      nh = min(HB, a.G - slice * HB);
      orow = a.out_compact ? rr : int64_t(s.batch) * a.Tq + s.q_start + t;
      if constexpr (FILTER) {
        rs = row_sel(a.sel.k, a.sel.ratio, a.sel.min_k, a.sel.sink, a.sel.window, n);
        hrow = rr * a.Hq + h0 + warp;
        thr = warp < nh ? a.thr[hrow] : 0xffffffffu;
      }
      if constexpr (MMA) {
        load_q_frags<D>(a.q, a.q.offset(s.batch, s.q_start + t, h0), nh, qparts, qb);
      } else {
#pragma unroll
        for (int h = 0; h < HB; h++) {
          int64_t qo = a.q.offset(s.batch, s.q_start + t, h0 + (h < nh ? h : 0)) + dg * 8;
#pragma unroll
          for (int e = 0; e < 8; e++) qv[h][e] = h < nh ? load1(a.q.data, a.q.dt, qo + e) : 0.f;
        }
      }
    }
    if constexpr (FILTER) item_units++;
    if (tile0 >= n && !a.fill_tail) continue;  // uniform over the block

    const unsigned char* ktile = kring + (step % NS) * (kTile * rowb);
    if constexpr (MMA) {
      // Warp w scores keys [16 w, 16 w + 16) of the tile for the 8 head columns.
      float c[4];
      slab_scores<D>(ktile + warp * 16 * rowb, qb, qparts, c);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const int key = warp * 16 + (lane >> 2) + 8 * (i >> 1), h = (lane & 3) * 2 + (i & 1);
        if (h < HB) sc[buf][h][key] = tile0 + key < n ? c[i] * a.scale : -INFINITY;
      }
    } else {
      const unsigned char* kt = ktile + dg * 8 * esize;
#pragma unroll
      for (int b0 = 0; b0 < KPT; b0 += KB) {
        float v[NB];
#pragma unroll
        for (int k = 0; k < KB; k++) {
          const int row = slot + (b0 + k) * SLOTS;
          float x[8];
          load8_shared(kt + row * rowb, a.k.dt, x);
#pragma unroll
          for (int h = 0; h < HB; h++) {
            float d = 0.f;
#pragma unroll
            for (int e = 0; e < 8; e++) d = fmaf(qv[h][e], x[e], d);
            v[k * HB + h] = d;
          }
        }
        reduce_scatter<NB, TPR>(v);
#pragma unroll
        for (int i = 0; i < NB / TPR; i++) {
          int idx = dg * (NB / TPR) + i;
          int k = b0 + idx / HB, h = idx % HB;
          int64_t j = tile0 + slot + k * SLOTS;
          sc[buf][h][slot + k * SLOTS] = j < n ? v[i] * a.scale : -INFINITY;
        }
      }
    }
    __syncthreads();
    if constexpr (FILTER) {
      if (warp < nh) filter_tile(a, sc[buf][0], warp, hrow, tile0, n, rs, thr, stage[warp], staged);
    } else {
      float* out0 = a.out + (orow * a.Hq + h0) * a.Smax + tile0;
      if (a.ovec && tile0 + kTile <= a.Smax && (a.Smax % 4) == 0) {
        for (int e = tid; e < nh * (kTile / 4); e += kThreads) {
          int h = e / (kTile / 4), c = e % (kTile / 4);
          float4 x = *reinterpret_cast<const float4*>(&sc[buf][h][c * 4]);
          *reinterpret_cast<float4*>(out0 + h * a.Smax + c * 4) = x;
        }
      } else {
        for (int e = tid; e < nh * kTile; e += kThreads) {
          int h = e / kTile, c = e % kTile;
          if (tile0 + c < a.Smax) out0[h * a.Smax + c] = sc[buf][h][c];
        }
      }
    }
    buf ^= 1;
  }
  cp_async_wait<0>();
  if constexpr (FILTER) {
    if (warp < nh) flush_stage(a, stage[warp], staged, hrow);
    if (cur_item >= 0) item_scored(a, cur_item, item_units);
  }
}

// Ring depth: three stages when two blocks per SM still fit in shared memory, else two; but
// two for the tensor-core kernel of the threshold path (measured 1-2% faster there than
// three on the H100; the plain tensor-core pass is faster with three: B=1 S=32K top-k decode
// 55 -> 54 us, a 2 GB pass the same); and one where two do not fit in a block (f32 K at
// D = 256: 128 KiB a tile).
template <int D, int HB, bool FILTER, int NS, bool MMA>
void launch_ring(const ScoreArgs& a, size_t ring) {
  static int per_sm[2] = {-1, -1};  // by K element size (2, 4)
  // The limit belongs to the kernel, not to the element size: an f16 call after an f32 one
  // must not shrink it (allow_smem never lowers it).
  allow_smem(scores_kernel<D, HB, FILTER, NS, MMA>, ring);
  int& ps = per_sm[a.k.esize == 4];
  if (ps < 0) {
    TOPK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ps, scores_kernel<D, HB, FILTER, NS, MMA>,
                                                            kThreads, ring));
    if (ps < 1) ps = 1;
  }
  int64_t grid = int64_t(num_sms()) * ps;
  if (grid > a.units) grid = a.units;
  if (grid < 1) return;
  scores_kernel<D, HB, FILTER, NS, MMA><<<unsigned(grid), kThreads, ring, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

template <int D, int HB, bool FILTER, bool MMA>
void run_ring(const ScoreArgs& a) {
  static size_t static_smem = 0, sm_smem = 0;
  if (sm_smem == 0) {
    cudaFuncAttributes fa;
    TOPK_CUDA(cudaFuncGetAttributes(&fa, scores_kernel<D, HB, FILTER, 2, MMA>));
    static_smem = fa.sharedSizeBytes;
    int dev = 0, v = 0;
    TOPK_CUDA(cudaGetDevice(&dev));
    TOPK_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    sm_smem = size_t(v);
  }
  const size_t stage_bytes = size_t(kTile) * D * a.k.esize;
  // The one-stage ring is built only where two f32 tiles overflow a block (D = 256).
  if constexpr (!MMA && 2 * size_t(kTile) * D * 4 > kMaxBlockSmem) {
    if (2 * stage_bytes + static_smem > kMaxBlockSmem)
      return launch_ring<D, HB, FILTER, 1, MMA>(a, stage_bytes);
  }
  // Two blocks of three 16-bit stages never fit an SM at D = 256 (64 KiB a stage): not built.
  if constexpr (!(MMA && FILTER) && 2 * 3 * size_t(kTile) * D * 2 <= kMaxBlockSmem) {
    if (2 * (3 * stage_bytes + static_smem + 1024) <= sm_smem)
      return launch_ring<D, HB, FILTER, 3, MMA>(a, 3 * stage_bytes);
  }
  launch_ring<D, HB, FILTER, 2, MMA>(a, 2 * stage_bytes);
}

// Tensor cores for bf16 K, FMAs for the other dtypes.
template <int D, int HB, bool FILTER>
void run_scores(const ScoreArgs& a) {
  if (a.k.dt == kBF16) run_ring<D, HB, FILTER, true>(a);
  else run_ring<D, HB, FILTER, false>(a);
}

ScoreArgs score_args(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1) {
  ScoreArgs a{};
  a.seqs = st.d;
  a.nseq = st.n;
  a.r0 = r0;
  a.nrows = r1 - r0;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  const int HB = score_item_heads(a.G);
  a.nslice = (a.G + HB - 1) / HB;
  a.Smax = p.Smax;
  a.tiles = (p.Smax + kTile - 1) / kTile;
  a.units = a.nrows * a.Hkv * a.nslice * a.tiles;
  a.scale = p.scale;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.kvec = rows_aligned(a.k);
  a.Tq = p.Tq;
  return a;
}

}  // namespace

void launch_scores(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1, float* out,
                   bool out_compact, bool fill_tail, bool reread) {
  if (r1 <= r0 || p.Smax == 0) return;
  ScoreArgs a = score_args(p, st, r0, r1);
  a.ovec = (reinterpret_cast<uintptr_t>(out) % 16) == 0;
  a.fill_tail = fill_tail;
  a.out_compact = out_compact;
  a.out = out;
  a.k_evict_first = reread;
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "attention_scores",
      if (a.G <= 4) run_scores<kD, 4, false>(a); else run_scores<kD, 8, false>(a));
}

void launch_scores_filter(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                          const SelectOpts& sel, const uint32_t* thr, int* cnt, uint32_t* cand,
                          int64_t cap, float* sel_scores, int64_t K, int* done) {
  if (r1 <= r0 || p.Smax == 0) return;
  ScoreArgs a = score_args(p, st, r0, r1);
  a.out_compact = true;
  a.sel = sel;
  a.thr = thr;
  a.cnt = cnt;
  a.cand = reinterpret_cast<uint2*>(cand);
  a.cap = cap;
  a.K = K;
  a.sel_scores = sel_scores;
  a.done = done;
  a.k_evict_first = true;
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "topk_attention_forward",
      if (a.G <= 4) run_scores<kD, 4, true>(a); else run_scores<kD, 8, true>(a));
}

int64_t threshold_items(const AttnParams& p, int64_t rows) {
  const int G = p.group(), HB = score_item_heads(G);
  return rows * p.Hkv * ((G + HB - 1) / HB);
}

void attention_scores(const AttnParams& p, float* scores) {
  SeqTable st = upload_seqs(p);
  launch_scores(p, st, 0, st.rows, scores, false, true, false);
}

}  // namespace topk::cuda
