// Selection and attention over stored score rows with one warp per (row, query head), for
// calls with many rows and small budgets (prefill and training: thousands of pairs, W of at
// most kWarpMaxK keys). The cluster kernel (topk/stored_select_attend.cu) spends a cluster of
// 1024+ threads and several cluster barriers on each pair, which suits a handful of decode
// rows but leaves a training step's million pairs waiting on latency. Here each warp:
//   sample  reads groups of 8 consecutive keys spread over the row (a 16th of it, at most kWCap
//           keys) and takes the r-th largest (to 16 bits) as a threshold tau, r a few deviations
//           above the budget's share of the sample, so that the row's keys >= tau number the
//           budget or more;
//   filter  reads the row once, keeps the keys >= tau in shared memory in index order;
//   select  finds the exact threshold key T among them (radix digits of 8 bits) and keeps
//           those above T and, of those equal to T, the lowest indices;
//   attend  softmax over the selection (forced sink and window keys included) and the sum of
//           the chosen V rows, in index order.
// When the filter keeps fewer than the budget or more than fit (ties at tau, a skewed sample),
// the warp selects over the whole row in global memory instead: the same digits, re-reading
// the row. Exact either way, ties to the lower index, like the reference.
// Group sharing (GRP): a warp per (row, KV head) selects over the group's rank row (summed
// probabilities, launch_group_rank) and then attends each head of the group in turn over the
// shared selection, with that head's stored scores.
#include <cmath>
#include <cstdlib>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/reduce.cuh"
#include "attention/cuda/topk/stored_rows.cuh"
#include "attention/cuda/topk/warp_kth.cuh"

namespace topk::cuda {

namespace {

constexpr int kWarps = 4;  // pairs per block (small blocks: a slow warp holds few others)

// Keys a warp keeps in shared memory (candidates, the sample): CAP. Budgets of up to CAP / 3
// keep their candidates under CAP with room to spare (about take + 12 sqrt(take) + 128 keys
// pass a row's filter), and the attend phase stages the selection in the upper halves. The
// smaller CAP fits more warps on an SM (its shared memory is what bounds them).
template <int CAP>
struct WarpCap {
  static constexpr int kMaxK = CAP / 3;
  static constexpr size_t kSmem = size_t(kWarps) * (CAP * 8 + 256 * 4);
  static constexpr int kMinBlocks = CAP <= 1024 ? 6 : 1;  // 24 warps an SM at <= 85 registers
  static_assert(CAP >= 2 * kMaxK, "the attend phase stages the selection in ckey/cidx's upper halves");
};
constexpr int kWCapLarge = 1536, kWCapMid = 1024, kWCapSmall = 768;
constexpr int kWarpMaxK = WarpCap<kWCapLarge>::kMaxK;  // the largest budget this kernel takes

// One step of an ordered pass: each lane holds up to 4 consecutive keys (valid: mask of the
// ones in range), kept when above T or equal to T within the quota eq_left (lowest positions
// first). Returns, per lane, the kept mask and the place of its first kept key counting from
// the step's start; total: the step's kept count. eq_left is updated for the next step.
__device__ __forceinline__ unsigned keep_step(const uint32_t (&key)[4], unsigned valid, uint32_t T,
                                              int& eq_left, int& place, int& total) {
  const int lane = threadIdx.x & 31;
  const unsigned lt = (1u << lane) - 1u;
  unsigned gt = 0, eq = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if (!(valid >> j & 1)) continue;
    gt |= unsigned(key[j] > T) << j;
    eq |= unsigned(key[j] == T) << j;
  }
  // Ties at T in index order: lanes before this one, then this lane's earlier keys.
  int eq_before = 0, eq_total = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const unsigned b = __ballot_sync(kFull, eq >> j & 1);
    eq_before += __popc(b & lt);
    eq_total += __popc(b);
  }
  unsigned keep = gt;
  int e = eq_before;
#pragma unroll
  for (int j = 0; j < 4; j++)
    if (eq >> j & 1) {
      if (e < eq_left) keep |= 1u << j;
      e++;
    }
  eq_left = eq_total >= eq_left ? 0 : eq_left - eq_total;
  place = 0;
  total = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const unsigned b = __ballot_sync(kFull, keep >> j & 1);
    place += __popc(b & lt);
    total += __popc(b);
  }
  return keep;
}

// Scores row[i0 .. i0 + 4) limited to [lo, hi) (16-byte loads when the row is aligned); returns
// the mask of those in range (the others read as 0).
__device__ __forceinline__ unsigned load4(const float* row, int i0, int lo, int hi, bool aligned,
                                          float (&x)[4]) {
  if (aligned && i0 >= lo && i0 + 4 <= hi) {
    const float4 v = *reinterpret_cast<const float4*>(row + i0);
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
    return 0xfu;
  }
  unsigned valid = 0;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const bool in = i0 + j >= lo && i0 + j < hi;
    x[j] = in ? row[i0 + j] : 0.f;
    valid |= unsigned(in) << j;
  }
  return valid;
}

// The kept keys of row[lo, hi) (above T, or equal to T within eq_left) appended in index order
// to ckey/cidx from position 0, storing at most cap of them; returns how many were kept.
__device__ int filter_row(const float* row, int lo, int hi, uint32_t T, int eq_left, int cap,
                          uint32_t* ckey, int32_t* cidx) {
  const int lane = threadIdx.x & 31;
  const bool aligned = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  const int start = aligned ? lo & ~3 : lo;
  int n = 0;
  constexpr int U = 8;  // steps of 128 keys in flight
  for (int b0 = start; b0 < hi; b0 += U * 128) {
    float x[U][4];
    unsigned valid[U];
#pragma unroll
    for (int u = 0; u < U; u++) valid[u] = load4(row, b0 + u * 128 + lane * 4, lo, hi, aligned, x[u]);
#pragma unroll
    for (int u = 0; u < U; u++) {
      uint32_t key[4];
#pragma unroll
      for (int j = 0; j < 4; j++) key[j] = order_key(x[u][j]);
      int place, total;
      const unsigned keep = keep_step(key, valid[u], T, eq_left, place, total);
#pragma unroll
      for (int j = 0; j < 4; j++)
        if (keep >> j & 1) {
          const int pos = n + place++;
          if (pos < cap) {
            ckey[pos] = key[j];
            cidx[pos] = b0 + u * 128 + lane * 4 + j;
          }
        }
      n += total;
    }
  }
  __syncwarp();
  return n;
}

// filter_row without a quota at the threshold, for the main path: every key of row[lo, hi) with
// order_key >= tau. A 128-key step costs some fifty warp instructions however many keys pass:
// scores are compared with key_floor(tau) (one instruction, not order_key's six), each lane's
// count of kept keys (0..4) is placed with three ballots, and the stores are predicated, not
// branched (scores go in as they are and become keys once at the end). Past cap, stores land
// on the last slot: the caller sees a count above cap and does not use the entries.
__device__ int filter_above(const float* row, int lo, int hi, uint32_t tau, int cap,
                            uint32_t* ckey, int32_t* cidx) {
  const int lane = threadIdx.x & 31;
  const unsigned lt = (1u << lane) - 1u;
  const bool all = tau == 0u;  // NaN scores (key 0) pass too
  const float ft = key_floor(tau);
  const bool aligned = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  const int start = aligned ? lo & ~3 : lo;
  int n = 0;
  constexpr int U = 8;  // steps of 128 keys in flight
  for (int b0 = start; b0 < hi; b0 += U * 128) {
    float x[U][4];
    unsigned valid[U];
#pragma unroll
    for (int u = 0; u < U; u++) valid[u] = load4(row, b0 + u * 128 + lane * 4, lo, hi, aligned, x[u]);
#pragma unroll
    for (int u = 0; u < U; u++) {
      unsigned keep = 0;
#pragma unroll
      for (int j = 0; j < 4; j++) keep |= unsigned(all || x[u][j] >= ft) << j;
      keep &= valid[u];
      const int c = __popc(keep);
      const unsigned c0 = __ballot_sync(kFull, c & 1), c1 = __ballot_sync(kFull, c & 2),
                     c2 = __ballot_sync(kFull, c & 4);
      int place = n + __popc(c0 & lt) + 2 * __popc(c1 & lt) + 4 * __popc(c2 & lt);
      const int i0 = b0 + u * 128 + lane * 4;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const bool on = keep >> j & 1;
        const int q = min(place, cap - 1);
        if (on) {
          ckey[q] = __float_as_uint(x[u][j]);
          cidx[q] = i0 + j;
        }
        place += on;
      }
      n += __popc(c0) + 2 * __popc(c1) + 4 * __popc(c2);
    }
  }
  __syncwarp();
  for (int i = lane; i < min(n, cap); i += 32) ckey[i] = order_key(__uint_as_float(ckey[i]));
  __syncwarp();
  return n;
}

// The ckey/cidx[0 .. kept) entries (in index order) reduced in place to the exact top `take`
// of them, still in index order: keys above the take-th largest T, and of those equal to T the
// lowest indices.
__device__ __forceinline__ void keep_top(uint32_t* ckey, int32_t* cidx, int kept, int take, int* hist) {
  const int lane = threadIdx.x & 31;
  uint32_t T;
  int need_eq;
  warp_kth([&](int i) { return ckey[i]; }, kept, take, 4, hist, T, need_eq);
  // In-place compaction: a kept entry moves to a place at or before its own, and each
  // step reads its entries before any lane writes.
  int out = 0, eq_left = need_eq;
  for (int b0 = 0; b0 < kept; b0 += 128) {
    uint32_t key[4];
    int32_t idx[4];
    unsigned valid = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int i = b0 + lane * 4 + j;
      valid |= unsigned(i < kept) << j;
      key[j] = i < kept ? ckey[i] : 0u;
      idx[j] = i < kept ? cidx[i] : 0;
    }
    int place, total;
    const unsigned keep = keep_step(key, valid, T, eq_left, place, total);
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 4; j++)
      if (keep >> j & 1) {
        ckey[out + place] = key[j];
        cidx[out + place] = idx[j];
        place++;
      }
    out += total;
    __syncwarp();
  }
}

// scale * q.k of a 16-bit query row and key row (element offsets, 16-byte aligned), summed in a
// fixed order: the candidate mode's scores of forced keys and of rows its candidates do not
// decide.
template <int D>
__device__ float qk_score(const DRows& q, int64_t qoff, const DRows& k, int64_t koff, float scale) {
  float d = 0.f;
#pragma unroll 4
  for (int c = 0; c < D / 8; c++) {
    float x[8], y[8];
    cvt8(*reinterpret_cast<const uint4*>(q.data + (qoff + 8 * c) * 2), q.dt, x);
    cvt8(ldg16(k.data + (koff + 8 * c) * 2), k.dt, y);
#pragma unroll
    for (int e = 0; e < 8; e++) d = fmaf(x[e], y[e], d);
  }
  return d * scale;
}

// GRP: one list per (row, KV head), selected over a.rank, attended by the group's G heads.
// CAND: the competing keys come as candidate lists (a.cand: the keys of each (row, head) at or
// above its sampled threshold, in index order, a.cnt of them; topk/tile_filter.cu) instead of a
// stored score row. A list of at least `take` keys and at most kWCap holds the row's top keys;
// any other row, and the forced keys, are scored here.
template <int D, int kWCap, bool CAND, bool GRP>
__global__ void __launch_bounds__(kWarps * 32, WarpCap<kWCap>::kMinBlocks)
    select_attend_warps_kernel(const StoredRowsArgs a) {
  constexpr int TPR = D / 8, SLOTS = 32 / TPR;  // threads per V row (8 elements each), rows at once
  static_assert(TPR <= 32, "a V row's lanes in one warp (D <= 256)");
  static_assert(!(CAND && GRP), "group sharing selects over stored rank rows");
  constexpr int kMaxK = WarpCap<kWCap>::kMaxK;
  extern __shared__ int smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  uint32_t* ckey = reinterpret_cast<uint32_t*>(smem) + warp * (2 * kWCap + 256);
  int32_t* cidx = reinterpret_cast<int32_t*>(ckey + kWCap);
  int* hist = cidx + kWCap;

  asm volatile("griddepcontrol.wait;" ::: "memory");  // the scores come from the kernel before
  const int64_t pair = int64_t(blockIdx.x) * kWarps + warp;  // (row, list)
  if (pair >= a.pairs) return;
  const int Hl = GRP ? a.Hq / a.G : a.Hq;  // lists a row: KV heads, or query heads
  const int64_t rr = pair / Hl;
  const int hl = int(pair % Hl), kvh = GRP ? hl : hl / a.G;
  const auto [s, t, qrow, n64] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  const int n = int(n64);
  const RowSel rs = row_sel(a.sel.k, a.sel.ratio, a.sel.min_k, a.sel.sink, a.sel.window, n);
  const int lo = int(rs.lo), hi = int(rs.hi), take = int(rs.take), m = int(rs.m);
  const int nsel = int(rs.forced) + take;
  const float* srow = CAND ? nullptr : GRP ? a.rank + (rr * Hl + hl) * a.Smax : a.scores + (rr * a.Hq + hl) * a.Smax;
  int32_t* orow = a.out + (qrow * Hl + hl) * a.K;
  const int64_t qoff = CAND ? a.q.offset(s.batch, s.q_start + t, hl) : 0;
  const int64_t kbase = CAND ? a.k.offset(s.batch, s.k_start, kvh) : 0;
  auto score_at = [&](int j) {
    if constexpr (CAND) return qk_score<D>(a.q, qoff, a.k, kbase + int64_t(j) * a.k.st, a.scale);
    else return srow[j];
  };

  // The chosen competing keys into ckey/cidx[0 .. take), in index order.
  if (CAND && take > 0) {
    const int kept = a.cnt[pair];
    if (kept >= take && kept <= kWCap) {
      const uint2* list = a.cand + pair * a.ccap;
      for (int i = lane; i < kept; i += 32) {
        const uint2 e = list[i];
        ckey[i] = order_key(__uint_as_float(e.x));
        cidx[i] = int32_t(e.y);
      }
      __syncwarp();
      if (kept > take) keep_top(ckey, cidx, kept, take, hist);
    } else {
      // The threshold misled: select over the row, scored here (slow, rare).
      uint32_t T;
      int need_eq;
      warp_kth([&](int i) { return order_key(score_at(lo + i)); }, m, take, 4, hist, T, need_eq);
      int out = 0;
      for (int b0 = lo; b0 < hi; b0 += 128) {
        uint32_t key[4];
        unsigned valid = 0;
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const int i = b0 + lane * 4 + j;
          valid |= unsigned(i < hi) << j;
          key[j] = i < hi ? order_key(score_at(i)) : 0u;
        }
        int place, total;
        const unsigned keep = keep_step(key, valid, T, need_eq, place, total);
#pragma unroll
        for (int j = 0; j < 4; j++)
          if (keep >> j & 1) {
            ckey[out + place] = key[j];
            cidx[out + place] = b0 + lane * 4 + j;
            place++;
          }
        out += total;
      }
    }
  } else if (!CAND && take > 0 && take < m) {
    uint32_t tau = 0;  // keep every key: the row fits whole
    if (m > kWCap) {
      // Groups of 8 keys (one 32-byte sector) evenly spread over [lo, hi): a 16th of the row,
      // or kWCap keys of longer rows. Loads go in batches of 8 per lane.
      const int groups = min(kWCap / 8, m / 128);
      const int ns = groups * 8;
      // Group g starts at lo + floor(g * stride), stride = (m - 8) / (groups - 1) in 32.32
      // fixed point (a 64-bit division per sample cost more than the loads).
      const uint64_t stride = (uint64_t(m - 8) << 32) / uint64_t(groups - 1);
      for (int i0 = 0; i0 < ns; i0 += 8 * 32) {
        float x[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
          const int i = i0 + u * 32 + lane;
          const int pos = lo + int((uint64_t(i >> 3) * stride) >> 32) + (i & 7);
          x[u] = i < ns ? srow[pos] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < 8; u++)
          if (i0 + u * 32 + lane < ns) ckey[i0 + u * 32 + lane] = order_key(x[u]);
      }
      __syncwarp();
      const int rk = sample_rank(take, ns, m);
      if (rk < ns) {
        int unused;
        // Two digits: tau is the lower edge of a 16-bit bin, a hair below the sampled key.
        warp_kth([&](int i) { return ckey[i]; }, ns, rk, 2, hist, tau, unused);
      }
    }
    int kept = filter_above(srow, lo, hi, tau, kWCap, ckey, cidx);
    if (kept >= take && kept <= kWCap) {
      keep_top(ckey, cidx, kept, take, hist);
    } else {
      // The sample misled: select over the row itself.
      uint32_t T;
      int need_eq;
      warp_kth([&](int i) { return order_key(srow[lo + i]); }, m, take, 4, hist, T, need_eq);
      filter_row(srow, lo, hi, T, need_eq, kWCap, ckey, cidx);
    }
  } else if (!CAND && take == m) {
    for (int i = lane; i < m; i += 32) {
      ckey[i] = order_key(srow[lo + i]);
      cidx[i] = lo + i;
    }
  }
  __syncwarp();

  // The selection in index order (sink [0, lo), the chosen keys, window [hi, n)), its indices
  // and scores staged once in the upper halves of cidx/ckey (take <= kMaxK leaves them
  // free), so that the V gather's lanes read an index and a weight instead of each decoding
  // the position and taking an exponential. With GRP the chosen keys' ckey are ranks, not
  // scores: each head stages its own scores below.
  int32_t* sidx = cidx + kMaxK;
  float* sw = reinterpret_cast<float*>(ckey + kMaxK);
  uint32_t mk = 0;
  for (int p = lane; p < nsel; p += 32) {
    const bool chosen = p >= lo && p < lo + take;
    const int i = p < lo ? p : chosen ? cidx[p - lo] : hi + (p - lo - take);
    sidx[p] = i;
    orow[p] = i;
    if (!GRP) {
      const uint32_t k = chosen ? ckey[p - lo] : order_key(score_at(i));
      sw[p] = key_score(k);
      mk = max(mk, k);
    }
  }
  for (int64_t p = nsel + lane; p < a.K; p += 32) orow[p] = -1;
  const int64_t vbase = int64_t(s.batch) * a.v.sb + int64_t(s.k_start) * a.v.st + int64_t(kvh) * a.v.sh;
  for (int g = 0; g < (GRP ? a.G : 1); g++) {
    const int h = GRP ? kvh * a.G + g : hl;
    if (GRP) {
      __syncwarp();  // sidx staged, and the previous head's gather done with sw
      const float* hrow = a.scores + (rr * a.Hq + h) * a.Smax;
      mk = 0;
      for (int p = lane; p < nsel; p += 32) {
        const uint32_t k = order_key(hrow[sidx[p]]);
        sw[p] = key_score(k);
        mk = max(mk, k);
      }
    }
    mk = __reduce_max_sync(kFull, mk);
    const float M = mk ? key_score(mk) : -INFINITY;
    float L = 0.f;
    if (M != -INFINITY)
      for (int p = lane; p < nsel; p += 32) {
        const float w = expf(sw[p] - M);
        sw[p] = w;
        L += w;
      }
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) L += __shfl_xor_sync(kFull, L, o);
    __syncwarp();

    const int dg = lane % TPR, slot = lane / TPR;
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = 0.f;
    if (M != -INFINITY) {
      constexpr int U = 8;
      for (int b0 = 0; b0 < nsel; b0 += SLOTS * U)
        gather_rows<U>(a.v, vbase, dg, a.vec_v, b0 + slot, SLOTS, nsel,
                       [&](int p) { return sidx[p]; }, [&](int p) { return sw[p]; }, acc);
    }
    // Slots summed in a fixed order: lanes dg, dg + TPR, ... hold one slot each.
#pragma unroll
    for (int o = TPR; o < 32; o <<= 1)
#pragma unroll
      for (int e = 0; e < 8; e++) acc[e] += __shfl_xor_sync(kFull, acc[e], o);
    const bool empty = !(L > 0.f);
    if (slot == 0) {
      const int64_t ooff = a.dst.offset(s.batch, s.q_start + t, h) + dg * 8;
#pragma unroll
      for (int e = 0; e < 8; e++) store1(a.dst.o, a.dst.dt, ooff + e, empty ? 0.f : acc[e] / L);
    }
    if (lane == 0) a.dst.lse[qrow * a.Hq + h] = empty ? INFINITY : M + logf(L);
  }  // heads of the group
}

template <int D, int CAP, bool CAND, bool GRP>
void launch_cap(const StoredRowsArgs& a, int64_t blocks) {
  allow_smem(select_attend_warps_kernel<D, CAP, CAND, GRP>, WarpCap<CAP>::kSmem);
  launch_ex(select_attend_warps_kernel<D, CAP, CAND, GRP>, blocks, kWarps * 32, WarpCap<CAP>::kSmem, 0, true, a);
}

template <bool CAND, bool GRP = false>
void launch_caps(const StoredRowsArgs& a, int D, int cap) {
  const int64_t blocks = (a.pairs + kWarps - 1) / kWarps;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_attention_forward: too many rows for one launch");
  TOPK_CUDA_HEAD_DIM_SWITCH(D, "topk_attention_forward",
      if (cap == kWCapSmall) launch_cap<kD, kWCapSmall, CAND, GRP>(a, blocks);
      else if (cap == kWCapMid) launch_cap<kD, kWCapMid, CAND, GRP>(a, blocks);
      else launch_cap<kD, kWCapLarge, CAND, GRP>(a, blocks));
}

}  // namespace

bool select_attend_warps_fits(int64_t K) { return K <= kWarpMaxK; }

// The candidate capacity of a launch: 768 for budgets of up to 256 keys, else 1536. On the H200
// the smaller one's extra warps (24 an SM against 8) outweigh its extra fallbacks: the forward
// at S = 8K, rho = 1% (K = 82) went from 111.2 to 96.4 ms with 768 instead of 1536. The 1024
// tier (budgets of 257 to 341 keys) is not chosen by default: on an H100 the prefill at S = 32K,
// rho = 1% (K = 328) took 151.8 ms with it against 92.8 ms with 1536 (docs/benchmarks.md).
// TOPK_CUDA_WARP_CAP=768|1024|1536 forces one where K fits it, else the smallest that fits (to
// measure the rule again).
int warp_select_cap(int64_t K) {
  const int fits = K <= WarpCap<kWCapSmall>::kMaxK ? kWCapSmall : kWCapLarge;
  const char* e = std::getenv("TOPK_CUDA_WARP_CAP");
  if (!e || !*e) return fits;
  const int cap = std::atoi(e);
  TOPK_CHECK(cap == kWCapSmall || cap == kWCapMid || cap == kWCapLarge,
             "TOPK_CUDA_WARP_CAP=%s: expected %d, %d or %d", e, kWCapSmall, kWCapMid, kWCapLarge);
  return K <= cap / 3 ? cap : fits;
}

void launch_select_attend_warps(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                                const SelectOpts& sel, const float* scores, int32_t* indices,
                                int64_t K) {
  if (r1 <= r0) return;
  TOPK_CHECK(select_attend_warps_fits(K) && p.Smax < (int64_t(1) << 30),
             "topk_attention_forward: budget or rows too large for the warp select");
  launch_caps<false>(stored_rows_args(p, st, r0, r1, sel, scores, indices, K), p.D, warp_select_cap(K));
}

void launch_select_attend_warps_group(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                                      const SelectOpts& sel, const float* scores, const float* rank,
                                      int32_t* indices, int64_t K) {
  if (r1 <= r0) return;
  TOPK_CHECK(select_attend_warps_fits(K) && p.Smax < (int64_t(1) << 30) && p.Hsel == p.Hkv,
             "topk_attention_forward: budget or rows too large for the warp select");
  StoredRowsArgs a = stored_rows_args(p, st, r0, r1, sel, scores, indices, K);
  a.pairs = (r1 - r0) * p.Hkv;
  a.rank = rank;
  launch_caps<false, true>(a, p.D, warp_select_cap(K));
}

void launch_select_attend_cands(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                                const SelectOpts& sel, const uint32_t* cand, const int* cnt,
                                int64_t cap, int32_t* indices, int64_t K) {
  if (r1 <= r0) return;
  TOPK_CHECK(select_attend_warps_fits(K) && cap == warp_select_cap(K) && p.Smax < (int64_t(1) << 30),
             "topk_attention_forward: budget or rows too large for the warp select");
  StoredRowsArgs a = stored_rows_args(p, st, r0, r1, sel, nullptr, indices, K);
  a.cand = reinterpret_cast<const uint2*>(cand);
  a.cnt = cnt;
  a.ccap = cap;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.scale = p.scale;
  launch_caps<true>(a, p.D, int(cap));
}

}  // namespace topk::cuda
