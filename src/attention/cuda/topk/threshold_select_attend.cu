// Selection and attention of the threshold path of top-k attention (topk/threshold.h): one block
// per (row, query head), after the filtering score pass; or, when the pairs are few, a cluster
// of `split` blocks per pair that each select (the same result, redundantly) and gather every
// split-th chunk of the chosen V rows, summed in the first block's shared memory.
//   select  When the row kept between `take` and `cap` candidates, a three-digit radix select
//           over them finds the exact threshold key T and how many keys equal to T to keep;
//           a bitmap of the survivors over the key positions then gives each its slot in
//           index order (ties to the lower index). Otherwise the row is scored again in full
//           into scratch and selected by select_row_block.
//   attend  Softmax over the selection's scores (sink, selected and window keys in index
//           order) and the weighted sum of their V rows, in a fixed order, into o and lse.
#include <cooperative_groups.h>

#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/reduce.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/topk/threshold.h"
#include "attention/cuda/topk/select_row.cuh"

namespace topk::cuda {

namespace {

constexpr int kWin = 131072;  // key positions per bitmap window
constexpr int kWords = kWin / 32;
constexpr int kWordsPerThread = kWords / kSelThreads;
// Dynamic shared memory: region A holds the candidates (keys, then indices), later the
// selection (indices, then scores); region B the histogram or the bitmaps and per-thread
// counts, later the V reduction. The fallback's select_row_block uses the first kSelSmem bytes.
constexpr int kSmemList = 8192;                       // entries of region A
constexpr int kRegionB = kBins > 2 * kWords ? kBins : 2 * kWords;
// After region B: per-thread slot bases (2 x kSelThreads ints) and, per bitmap word, the
// survivors in the owner's earlier words (kWords uint16: above T | equal to T << 8; at most
// 7 x 32 each). Counting word by word per candidate instead took a quarter of the select.
constexpr size_t kSASmem = size_t(2 * kSmemList + kRegionB + 2 * kSelThreads + kWords / 2) * 4;
static_assert(kSASmem >= kSelSmem, "the fallback's select needs kSelSmem bytes");

struct SAArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0;
  int Hq, Hkv, G, nslice, HBs;
  int split;  // blocks (a cluster) per (row, head)
  int64_t Smax, Tq, K, cap, tiles;
  float scale;
  bool causal, vec_k, vec_v;
  DRows q, k, v;
  SelectOpts sel;
  const int* cnt;
  const int* done;  // key tiles scored per score item; complete at `tiles`
  const uint2* cand;
  float* sel_scores;
  float* scratch;
  int32_t* out;
  DOut dst;
};

// Exact top-`take` of the c candidates (c >= take): in index order to sel (from position 0),
// their scores to fsel.
__device__ void select_candidates(const uint2* gcand, int c, int take, int64_t lo, int64_t hi,
                                  int* smem, int* tmp, int* s_res, int32_t* sel, float* fsel) {
  const int tid = threadIdx.x;
  uint32_t* ck = reinterpret_cast<uint32_t*>(smem);
  uint32_t* ci = ck + kSmemList;
  int* hist = smem + 2 * kSmemList;
  // The candidates into shared memory when they fit, all loads of a thread in flight at once.
  const bool in_smem = c <= kSmemList;
  if (in_smem) {
    constexpr int U = 8;
    for (int i0 = 0; i0 < c; i0 += U * kSelThreads) {
      uint2 v[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        int i = i0 + tid + u * kSelThreads;
        v[u] = i < c ? __ldcg(gcand + i) : make_uint2(0, 0);
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        int i = i0 + tid + u * kSelThreads;
        if (i < c) {
          ck[i] = v[u].x;
          ci[i] = v[u].y;
        }
      }
    }
  }
  // Through L2 (__ldcg): the list was written while this kernel ran (its L1 may be stale).
  auto cand = [&](int i) { return in_smem ? make_uint2(ck[i], ci[i]) : __ldcg(gcand + i); };

  // Three radix digits (12, 12, 8 bits) of the take-th largest key.
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  // Uniform loops: hist_add needs every lane of a warp.
  for (int i0 = 0; i0 < c; i0 += kSelThreads) {
    const int i = i0 + tid;
    hist_add(hist, i < c ? int(cand(i).x >> 20) : 0, i < c);
  }
  __syncthreads();
  int b1, a1;
  find_bin(hist, kBins, take, tmp, s_res, b1, a1);
  const int need1 = take - a1;
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  // The lower digits spread over many bins: plain atomics beat warp aggregation here.
  for (int i = tid; i < c; i += kSelThreads) {
    const uint32_t k = cand(i).x;
    if (int(k >> 20) == b1) atomicAdd(&hist[(k >> 8) & 0xfff], 1);
  }
  __syncthreads();
  int b2, a2;
  find_bin(hist, kBins, need1, tmp, s_res, b2, a2);
  const int need2 = need1 - a2;
  const uint32_t pre2 = (uint32_t(b1) << 12) | uint32_t(b2);
  const bool whole = hist[b2] == need2 && pre2 != 0;
  __syncthreads();  // hist is reused below
  uint32_t T;
  int need3;  // keys equal to T to keep: the lowest indices
  if (whole) {
    // The bin holds exactly the keys still needed (without ties at the threshold, one key):
    // all of it is kept, and the last digit is not needed. T lies just below the bin.
    T = (pre2 << 8) - 1u;
    need3 = 0;
  } else {
    for (int i = tid; i < 256; i += kSelThreads) hist[i] = 0;
    __syncthreads();
    for (int i0 = 0; i0 < c; i0 += kSelThreads) {
      const int i = i0 + tid;
      const uint32_t k = i < c ? cand(i).x : 0u;
      hist_add(hist, int(k & 0xff), i < c && (k >> 8) == pre2);
    }
    __syncthreads();
    int b3, a3;
    find_bin(hist, 256, need2, tmp, s_res, b3, a3);
    need3 = need2 - a3;
    T = (pre2 << 8) | uint32_t(b3);
  }

  // Slots in index order: a key's slot is the number of kept keys before it, counted from
  // bitmaps of the keys above T and equal to T (thread i owns words 8i .. 8i+7).
  uint32_t* gtw = reinterpret_cast<uint32_t*>(hist);
  uint32_t* eqw = gtw + kWords;
  int* tpg = reinterpret_cast<int*>(eqw + kWords);
  int* tpe = tpg + kSelThreads;
  uint16_t* wpre = reinterpret_cast<uint16_t*>(tpe + kSelThreads);
  static_assert((kWordsPerThread - 1) * 32 < 256, "word prefixes are 8-bit");
  int gbase = 0, ebase = 0;
  for (int64_t w0 = lo; w0 < hi; w0 += kWin) {
    for (int i = tid; i < kWords; i += kSelThreads) {
      gtw[i] = 0;
      eqw[i] = 0;
    }
    __syncthreads();
    for (int i = tid; i < c; i += kSelThreads) {
      uint2 e = cand(i);
      int64_t b = int64_t(e.y) - w0;
      if (b >= 0 && b < kWin && e.x >= T) atomicOr(&(e.x > T ? gtw : eqw)[b >> 5], 1u << (b & 31));
    }
    __syncthreads();
    int cgt = 0, ceq = 0;
#pragma unroll
    for (int q = 0; q < kWordsPerThread; q++) {
      const int wd = tid * kWordsPerThread + q;
      wpre[wd] = uint16_t(cgt | (ceq << 8));
      cgt += __popc(gtw[wd]);
      ceq += __popc(eqw[wd]);
    }
    int tg, te;
    const int pg = block_exclusive_scan(cgt, tmp, &tg);
    const int pe = block_exclusive_scan(ceq, tmp, &te);
    tpg[tid] = gbase + pg;
    tpe[tid] = ebase + pe;
    __syncthreads();
    for (int i = tid; i < c; i += kSelThreads) {
      uint2 e = cand(i);
      int64_t b = int64_t(e.y) - w0;
      if (b < 0 || b >= kWin || e.x < T) continue;
      const int wd = int(b >> 5), own = wd / kWordsPerThread;
      const uint32_t pre = wpre[wd], below = (1u << (b & 31)) - 1u;
      const int gb = tpg[own] + int(pre & 0xffu) + __popc(gtw[wd] & below);
      const int eb = tpe[own] + int(pre >> 8) + __popc(eqw[wd] & below);
      int pos;
      if (e.x > T) {
        pos = gb + min(eb, need3);
      } else {
        if (eb >= need3) continue;
        pos = gb + eb;
      }
      sel[pos] = int32_t(e.y);
      fsel[pos] = key_score(e.x);
    }
    gbase += tg;
    ebase += te;
    __syncthreads();
  }
}

// The row's candidates do not decide it: score all its competing keys into srow (one block,
// slow but rare) and select from the full row.
template <int D>
__device__ void select_full_row(const SAArgs& a, const DSeq& s, int64_t t, int kvh, int h,
                                float* srow, const RowSel& rs, int* smem, int* tmp, int* s_res,
                                int32_t* sel, float* fsel) {
  constexpr int TPR = D / 8, SLOTS = kSelThreads / TPR;
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  float qv[8];
  const int64_t qo = a.q.offset(s.batch, s.q_start + t, h) + dg * 8;
#pragma unroll
  for (int e = 0; e < 8; e++) qv[e] = load1(a.q.data, a.q.dt, qo + e);
  const int64_t kbase = int64_t(s.batch) * a.k.sb + int64_t(s.k_start) * a.k.st + int64_t(kvh) * a.k.sh;
  for (int64_t j0 = rs.lo; j0 < rs.hi; j0 += SLOTS) {  // uniform trip count: lanes reduce
    const int64_t j = j0 + slot;
    const bool ok = j < rs.hi;
    const int64_t off[1] = {kbase + (ok ? j : rs.lo) * a.k.st + dg * 8};
    const bool valid[1] = {ok};
    load_groups<1>(a.k, off, valid, a.vec_k, [&](int, const float (&x)[8]) {
      float d = 0.f;
#pragma unroll
      for (int e = 0; e < 8; e++) d = fmaf(qv[e], x[e], d);
#pragma unroll
      for (int o = TPR / 2; o >= 1; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      if (dg == 0 && ok) srow[j] = d * a.scale;
    });
  }
  __syncthreads();
  if (rs.take == rs.m) {
    for (int64_t i = tid; i < rs.m; i += kSelThreads) sel[i] = int32_t(rs.lo + i);
  } else {
    select_row_block(srow, rs.lo, rs.hi, rs.take, smem, tmp, s_res, sel);
  }
  __syncthreads();
  for (int64_t i = tid; i < rs.take; i += kSelThreads) fsel[i] = srow[sel[i]];
}

// U: V rows in flight per thread. Few blocks (small batch) are latency-bound and take U = 8
// at one block per SM; many take U = 4 at two per SM (the registers of U = 8 would spill).
template <int D, int U>
__global__ void __launch_bounds__(kSelThreads, U >= 8 ? 1 : 2) select_attend_kernel(const SAArgs a) {
  constexpr int TPR = D / 8, SLOTS = kSelThreads / TPR;
  static_assert(TPR <= 32 && SLOTS * D <= kRegionB, "a V row's lanes in one warp; the partials fit region B");
  extern __shared__ int smem[];
  __shared__ int tmp[33];
  __shared__ int s_res[2];
  __shared__ float s_red[kSelThreads / 32];

  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  const int64_t pair = blockIdx.x / a.split;
  const int part = int(blockIdx.x % a.split);  // rank in the pair's cluster
  const int64_t rr = pair / a.Hq;
  const int h = int(pair % a.Hq), kvh = h / a.G;
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  const RowSel rs = row_sel(a.sel.k, a.sel.ratio, a.sel.min_k, a.sel.sink, a.sel.window, n);
  const int64_t nsel = rs.forced + rs.take;
  int32_t* orow = a.out + (qrow * a.Hq + h) * a.K;
  float* frow = a.sel_scores + (rr * a.Hq + h) * a.K;

  // This kernel overlaps the tail of the filtering pass: wait until every key tile of this
  // head's score item is in (the acquire pairs with the pass's fence and count).
  if (tid == 0) {
    const int64_t item = (rr * a.Hkv + kvh) * a.nslice + (h - kvh * a.G) / a.HBs;
    const int* d = a.done + item;
    int v;
    while (true) {
      asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(d) : "memory");
      if (v >= a.tiles) break;
      __nanosleep(500);
    }
  }
  __syncthreads();

  // Index order: sink, the selected keys, window; -1 after.
  for (int64_t i = tid; i < rs.lo; i += kSelThreads) orow[i] = int32_t(i);
  for (int64_t i = tid; i < n - rs.hi; i += kSelThreads) orow[rs.lo + rs.take + i] = int32_t(rs.hi + i);
  for (int64_t i = nsel + tid; i < a.K; i += kSelThreads) orow[i] = -1;
  if (rs.take > 0) {
    const int c = __ldcg(a.cnt + rr * a.Hq + h);
    if (c >= rs.take && c <= a.cap)
      select_candidates(a.cand + (rr * a.Hq + h) * a.cap, c, int(rs.take), rs.lo, rs.hi, smem,
                        tmp, s_res, orow + rs.lo, frow + rs.lo);
    else
      select_full_row<D>(a, s, t, kvh, h, a.scratch + (rr * a.Hq + h) * a.Smax, rs, smem, tmp,
                         s_res, orow + rs.lo, frow + rs.lo);
  }
  __syncthreads();

  // The selection (written to global memory by many threads) into shared memory when it fits.
  int32_t* sidx = reinterpret_cast<int32_t*>(smem);
  float* ssc = reinterpret_cast<float*>(smem + kSmemList);
  const bool sel_smem = nsel <= kSmemList;
  if (sel_smem) {
    for (int64_t i0 = 0; i0 < nsel; i0 += 4 * kSelThreads) {
      int32_t x[4];
      float y[4];
#pragma unroll
      for (int u = 0; u < 4; u++) {
        int64_t i = i0 + tid + u * kSelThreads;
        x[u] = i < nsel ? __ldcg(orow + i) : 0;
        y[u] = i < nsel ? __ldcg(frow + i) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < 4; u++) {
        int64_t i = i0 + tid + u * kSelThreads;
        if (i < nsel) {
          sidx[i] = x[u];
          ssc[i] = y[u];
        }
      }
    }
    __syncthreads();
  }
  auto score_at = [&](int64_t i) { return sel_smem ? ssc[i] : __ldcg(frow + i); };
  auto index_at = [&](int64_t i) { return sel_smem ? sidx[i] : __ldcg(orow + i); };

  // Softmax over the selection's scores (in shared memory the scores become the weights
  // exp(s - max), computed once), then the V rows weighted in index order.
  float mx = -INFINITY;
  for (int64_t i = tid; i < nsel; i += kSelThreads) mx = fmaxf(mx, score_at(i));
  mx = block_reduce(mx, true, s_red);
  float sum = 0.f;
  for (int64_t i = tid; i < nsel; i += kSelThreads) {
    const float w = mx == -INFINITY ? 0.f : expf(score_at(i) - mx);
    if (sel_smem) ssc[i] = w;
    sum += w;
  }
  const float L = block_reduce(sum, false, s_red);  // its barriers publish the weights
  auto weight_at = [&](int64_t i) {
    return sel_smem ? ssc[i] : (mx == -INFINITY ? 0.f : expf(__ldcg(frow + i) - mx));
  };
  const int64_t vbase = int64_t(s.batch) * a.v.sb + int64_t(s.k_start) * a.v.st + int64_t(kvh) * a.v.sh;
  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; e++) acc[e] = 0.f;
  // Chunks of SLOTS * U rows, every split-th one from this block's rank. The weights (and
  // mx, L) are the same in every block of a pair, so the partial sums just add. Aligned
  // bf16 rows with the selection in shared memory (the common case) take gather_bf16.
  if (sel_smem && a.vec_v && a.v.dt == kBF16) {
    for (int b0 = part * SLOTS * U; b0 < nsel; b0 += a.split * SLOTS * U)
      gather_bf16<U>(a.v.data, vbase, a.v.st, dg, sidx, ssc, b0 + slot, SLOTS, int(nsel), acc);
  } else {
    for (int64_t b0 = int64_t(part) * SLOTS * U; b0 < nsel; b0 += int64_t(a.split) * SLOTS * U)
      gather_rows<U>(a.v, vbase, dg, a.vec_v, b0 + slot, int64_t(SLOTS), int64_t(nsel), index_at,
                     weight_at, acc);
  }
  __syncthreads();  // region B is free once every thread is past the selection copy
  float* red = reinterpret_cast<float*>(smem + 2 * kSmemList);  // [SLOTS][D] in region B
#pragma unroll
  for (int e = 0; e < 8; e++) red[slot * D + dg * 8 + e] = acc[e];
  const bool empty = !(L > 0.f);
  const int64_t ooff = a.dst.offset(s.batch, s.q_start + t, h);
  if (a.split == 1) {
    __syncthreads();
    for (int d = tid; d < D; d += kSelThreads) {
      float x = 0.f;
      for (int sl = 0; sl < SLOTS; sl++) x += red[sl * D + d];
      store1(a.dst.o, a.dst.dt, ooff + d, empty ? 0.f : x / L);
    }
  } else {
    // Every block's partials are in its shared memory; the first block sums them (in rank
    // order: deterministic), and the others stay until it is done reading.
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    if (part == 0) {
      for (int d = tid; d < D; d += kSelThreads) {
        float x = 0.f;
        for (int c = 0; c < a.split; c++) {
          const float* rc = cluster.map_shared_rank(red, c);
          for (int sl = 0; sl < SLOTS; sl++) x += rc[sl * D + d];
        }
        store1(a.dst.o, a.dst.dt, ooff + d, empty ? 0.f : x / L);
      }
    }
    cluster.sync();
  }
  if (tid == 0 && part == 0) a.dst.lse[qrow * a.Hq + h] = empty ? INFINITY : mx + logf(L);
}

// Launched as a programmatic dependent of the filtering pass (which lets it start early), so
// its blocks take SMs as the pass's blocks leave them.
template <int D, int U>
void run_select_attend(const SAArgs& a, int64_t blocks) {
  allow_smem(select_attend_kernel<D, U>, kSASmem);
  launch_ex(select_attend_kernel<D, U>, blocks, kSelThreads, kSASmem, a.split > 1 ? a.split : 0, true, a);
}

}  // namespace

void launch_select_attend(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                          const SelectOpts& sel, const int* cnt, const uint32_t* cand,
                          int64_t cap, float* sel_scores, float* scratch, int32_t* indices,
                          int64_t K, const int* done) {
  if (r1 <= r0) return;
  SAArgs a;
  a.seqs = st.d;
  a.nseq = st.n;
  a.r0 = r0;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  a.HBs = score_item_heads(a.G);
  a.nslice = (a.G + a.HBs - 1) / a.HBs;
  a.tiles = (p.Smax + kTile - 1) / kTile;
  a.done = done;
  a.Smax = p.Smax;
  a.Tq = p.Tq;
  a.K = K;
  a.cap = cap;
  a.scale = p.scale;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  a.vec_k = rows_aligned(a.k);
  a.vec_v = rows_aligned(a.v);
  a.sel = sel;
  a.cnt = cnt;
  a.cand = reinterpret_cast<const uint2*>(cand);
  a.sel_scores = sel_scores;
  a.scratch = scratch;
  a.out = indices;
  a.dst = dout(p);
  const int64_t pairs = (r1 - r0) * p.Hq;
  // At most half as many pairs as SMs: a cluster of 2 blocks per pair. (H100, B=1 Hq=32,
  // whole top-k decode at S = 32K / 128K: 90.4 / 154.0 us with 1 block per pair, 84.8 / 148.7
  // with 2, 106.6 / 171.6 with 4, 111-116 / 175 with 8.)
  a.split = pairs * 2 <= num_sms() ? 2 : 1;
  const int64_t blocks = pairs * a.split;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_attention_forward: too many rows for one launch");
  const bool few = blocks <= num_sms();
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "topk_attention_forward",
      if (few) run_select_attend<kD, 8>(a, blocks); else run_select_attend<kD, 4>(a, blocks));
}

}  // namespace topk::cuda
