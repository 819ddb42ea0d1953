// The Lightning Indexer's distillation loss and its gradient on CUDA (indexer_loss, approx.h).
// Query rows go in ranges whose work arrays stay under the workspace budget; per range:
//
//   row kernel   a block per group of up to 8 consecutive query rows of one sequence: marks
//                each row's key set in P (-1: not in it), then tiles of 32 keys go through
//                shared memory once for the group (read coalesced, one KV head at a time, then
//                the indexer keys), a thread per (row, key, head) takes the dots, and a thread
//                per (row, key) of the tile adds up the target mass p(s) = sum_h
//                e^(scale q_h.k_s - lse_h) and I(s) in head order into P and I (a thread per
//                key reading its own row from global memory made this kernel 100x slower);
//                warp rr owns row rr's slots, so its sum p and max I are one warp's fixed
//                tree; block reductions (fixed trees) give the softmax of I row by row; the
//                loss is written and P becomes g(s) = softmax(I)(s) - p(s) (0 outside the set).
//                dqi and dw then sum over tiles of 32 keys in key order: the tile's ki in
//                shared memory, the head dots of the tile, and each (row, head, dim) of dqi
//                accumulated by its one thread in shared memory.
//   key kernel   a block per (tile of 32 keys, chunk of 256 of the range's rows of a
//                sequence): the chunk's rows go in groups of up to 8 (g, qi, w in shared
//                memory; a thread per (row, head, key) for the dots), each (key, dim) summing in
//                row order; loss_keys_sum then adds the chunks to dki in chunk order, after what
//                earlier ranges left, so every sum has one fixed order.
// Plain fp32 FMAs: the loss trains small indexers; every reduction has a fixed order, so a
// step gives the same bits on every run.
#include <algorithm>
#include <cstring>
#include <vector>

#include "attention/approx.h"
#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTileKeys = 32;

struct LossArgs {
  const DSeq* seqs;
  int nseq;
  int Hq, G, D, HI, dI;
  int64_t Tq, Smax, L, K;
  int64_t r0, r1;  // the range of compact rows
  float scale;
  bool causal;
  DRows q, k, qi, ki;
  const float* lse;     // [B, Tq, Hq]
  const float* w;       // [B, Tq, HI]
  const int32_t* idx;   // [B, Tq, 1, K] or null
  float* loss;          // [B, Tq]
  float* dqi;           // [B, Tq, HI, dI] or null
  float* dw;            // [B, Tq, HI]
  float* dki;           // [B, Smax, dI]
  float* P;             // [r1 - r0, L]: target mass, then g
  float* I;             // [r1 - r0, L]: indexer scores
};

// Block-wide sum or max (fixed tree; every thread gets the result). tmp: 32 floats.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float x, float* tmp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, off);
    x = MAX ? fmaxf(x, y) : x + y;
  }
  __syncthreads();
  if (lane == 0) tmp[warp] = x;
  __syncthreads();
  x = lane < int(blockDim.x >> 5) ? tmp[lane] : (MAX ? -INFINITY : 0.f);
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, off);
    x = MAX ? fmaxf(x, y) : x + y;
  }
  return x;
}

// The indexer keys of tile j0 (kTileKeys keys of sequence s) into kt, and every row's indexer
// head dots with them, q^I . k^I, into dots [row][head][key]; synchronised before and after.
__device__ __forceinline__ void indexer_tile_dots(const LossArgs& a, const DSeq& s, int64_t j0,
                                                  int nr, const float* qis, int kw, int GH,
                                                  float* kt, float* dots) {
  for (int i = threadIdx.x; i < kTileKeys * a.dI; i += kThreads) {
    const int64_t j = j0 + i / a.dI;
    kt[(i / a.dI) * kw + i % a.dI] =
        j < s.S ? load1(a.ki.data, a.ki.dt, a.ki.offset(s.batch, s.k_start + j, 0) + i % a.dI) : 0.f;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nr * a.HI * kTileKeys; i += kThreads) {
    const int cc = i % kTileKeys, rh = i / kTileKeys, rr = rh / a.HI, h = rh % a.HI;
    const float* qh = qis + rh * a.dI;
    float d = 0.f;
    for (int e = 0; e < a.dI; e++) d = fmaf(qh[e], kt[cc * kw + e], d);
    dots[(rr * GH + h) * (kTileKeys + 1) + cc] = d;
  }
  __syncthreads();
}

// One block of loss_rows: n (<= RQ) consecutive query rows of sequence `seq`, from compact row r.
struct RowJob {
  int32_t seq, n;
  int64_t r;
};

// A block per RowJob: the rows share each key tile's loads; warp rr owns row rr's 32 slots of
// every tile (its p, I, and the row's partial sum and max), so a row's reductions are one
// warp's fixed tree.
__global__ void __launch_bounds__(kThreads) loss_rows(const LossArgs a, const RowJob* jobs, int RQ) {
  extern __shared__ float sm[];
  // per row: q [Hq D], qi [HI dI], dq [HI dI], w [HI], dw [HI], lse [Hq], dots [max(G, HI)][33],
  // g [32]; then kt [32][max(D, dI) + 1], red [2][8], tmp [32]
  const int kw = (a.D > a.dI ? a.D : a.dI) + 1;  // a key's row in kt, padded against bank conflicts
  const int GH = a.G > a.HI ? a.G : a.HI, HD = a.HI * a.dI;
  float* qs = sm;
  float* qis = qs + RQ * a.Hq * a.D;
  float* dqs = qis + RQ * HD;
  float* ws = dqs + RQ * HD;
  float* dws = ws + RQ * a.HI;
  float* ls = dws + RQ * a.HI;
  float* dots = ls + RQ * a.Hq;
  float* gt = dots + RQ * GH * (kTileKeys + 1);
  float* kt = gt + RQ * kTileKeys;
  float* red = kt + kTileKeys * kw;
  float* tmp = red + 16;
  const RowJob jb = jobs[blockIdx.x];
  const DSeq s = a.seqs[jb.seq];
  const int nr = jb.n, S = s.S;
  const int64_t t0 = jb.r - s.r0, qrow0 = int64_t(s.batch) * a.Tq + s.q_start + t0;
  float* P0 = a.P + (jb.r - a.r0) * a.L;
  float* I0 = a.I + (jb.r - a.r0) * a.L;
  for (int i = threadIdx.x; i < nr * a.Hq * a.D; i += kThreads) {
    const int rr = i / (a.Hq * a.D), hd = i % (a.Hq * a.D);
    qs[i] = load1(a.q.data, a.q.dt, a.q.offset(s.batch, s.q_start + t0 + rr, hd / a.D) + hd % a.D);
  }
  for (int i = threadIdx.x; i < nr * HD; i += kThreads) {
    const int rr = i / HD, he = i % HD;
    qis[i] = load1(a.qi.data, a.qi.dt, a.qi.offset(s.batch, s.q_start + t0 + rr, he / a.dI) + he % a.dI);
    dqs[i] = 0.f;
  }
  for (int i = threadIdx.x; i < nr * a.HI; i += kThreads) ws[i] = a.w[qrow0 * a.HI + i], dws[i] = 0.f;
  for (int i = threadIdx.x; i < nr * a.Hq; i += kThreads) ls[i] = a.lse[qrow0 * a.Hq + i];
  // The key sets: -1 outside, 0 inside.
  for (int rr = 0; rr < nr; rr++) {
    const int64_t n = visible_keys(s, t0 + rr, a.causal);
    for (int64_t j = threadIdx.x; j < S; j += kThreads) P0[rr * a.L + j] = a.idx ? -1.f : (j < n ? 0.f : -1.f);
  }
  __syncthreads();
  if (a.idx)
    for (int64_t i = threadIdx.x; i < nr * a.K; i += kThreads) {
      const int rr = int(i / a.K);
      const int32_t j = a.idx[qrow0 * a.K + i];
      if (j >= 0 && j < S) P0[rr * a.L + j] = 0.f;  // duplicates write the same value
    }
  __syncthreads();
  const int Hkv = a.Hq / a.G;
  const int own = threadIdx.x >> 5, c = threadIdx.x & 31;  // the (row, slot) this thread owns
  float psum = 0.f, imax = -INFINITY;
  for (int64_t j0 = 0; j0 < S; j0 += kTileKeys) {
    const bool in = own < nr && j0 + c < S && P0[own * a.L + j0 + c] >= 0.f;
    if (!__syncthreads_or(in)) continue;
    float p = 0.f;
    for (int kh = 0; kh < Hkv; kh++) {
      for (int i = threadIdx.x; i < kTileKeys * a.D; i += kThreads) {
        const int64_t j = j0 + i / a.D;
        kt[(i / a.D) * kw + i % a.D] =
            j < S ? load1(a.k.data, a.k.dt, a.k.offset(s.batch, s.k_start + j, kh) + i % a.D) : 0.f;
      }
      __syncthreads();
      for (int i = threadIdx.x; i < nr * a.G * kTileKeys; i += kThreads) {
        const int cc = i % kTileKeys, rg = i / kTileKeys, rr = rg / a.G, g = rg % a.G;
        const float* qh = qs + (rr * a.Hq + kh * a.G + g) * a.D;
        float d = 0.f;
        for (int e = 0; e < a.D; e++) d = fmaf(qh[e], kt[cc * kw + e], d);
        dots[(rr * GH + g) * (kTileKeys + 1) + cc] = d;
      }
      __syncthreads();
      if (in)
        for (int g = 0; g < a.G; g++)
          p += expf(a.scale * dots[(own * GH + g) * (kTileKeys + 1) + c] - ls[own * a.Hq + kh * a.G + g]);
      __syncthreads();  // kt and dots are rewritten next
    }
    indexer_tile_dots(a, s, j0, nr, qis, kw, GH, kt, dots);
    if (in) {
      float x = 0.f;
      for (int h = 0; h < a.HI; h++)
        x = fmaf(ws[own * a.HI + h], fmaxf(dots[(own * GH + h) * (kTileKeys + 1) + c], 0.f), x);
      P0[own * a.L + j0 + c] = p;
      I0[own * a.L + j0 + c] = x;
      psum += p;
      imax = fmaxf(imax, x);
    }
    // The next tile's first write to kt and dots comes after its __syncthreads_or.
  }
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) {
    psum += __shfl_xor_sync(0xffffffffu, psum, off);
    imax = fmaxf(imax, __shfl_xor_sync(0xffffffffu, imax, off));
  }
  if (c == 0 && own < 8) red[own] = psum, red[8 + own] = imax;
  __syncthreads();
  for (int rr = 0; rr < nr; rr++) {
    float* P = P0 + rr * a.L;
    const float* I = I0 + rr * a.L;
    const float ps = red[rr], im = red[8 + rr];
    float se = 0.f;
    for (int64_t j = threadIdx.x; j < S; j += kThreads)
      if (P[j] >= 0.f) se += expf(I[j] - im);
    se = block_reduce<false>(se, tmp);
    const bool live = ps > 0.f && isfinite(ps) && se > 0.f;
    const float lseI = im + logf(se);
    float loss = 0.f;
    for (int64_t j = threadIdx.x; j < S; j += kThreads) {
      float g = 0.f;
      if (P[j] >= 0.f && live) {
        const float p = P[j] / ps;
        if (p > 0.f) loss += p * (logf(p) - (I[j] - lseI));
        g = expf(I[j] - lseI) - p;
      }
      P[j] = g;
    }
    loss = block_reduce<false>(loss, tmp);
    if (threadIdx.x == 0) a.loss[qrow0 + rr] = loss;
  }
  if (!a.dqi) return;
  __syncthreads();  // every g is in P
  for (int64_t j0 = 0; j0 < S; j0 += kTileKeys) {
    const float gv = own < nr && j0 + c < S ? P0[own * a.L + j0 + c] : 0.f;
    if (!__syncthreads_or(gv != 0.f)) continue;
    if (own < nr) gt[own * kTileKeys + c] = gv;
    indexer_tile_dots(a, s, j0, nr, qis, kw, GH, kt, dots);
    for (int i = threadIdx.x; i < nr * HD; i += kThreads) {
      const int rh = i / a.dI, e = i % a.dI, rr = rh / a.HI, h = rh % a.HI;
      const float* dt = dots + (rr * GH + h) * (kTileKeys + 1);
      const float* g = gt + rr * kTileKeys;
      float acc = dqs[i];
      for (int cc = 0; cc < kTileKeys; cc++)
        if (dt[cc] > 0.f) acc = fmaf(g[cc] * ws[rh], kt[cc * kw + e], acc);
      dqs[i] = acc;
    }
    for (int i = threadIdx.x; i < nr * a.HI; i += kThreads) {
      const int rr = i / a.HI, h = i % a.HI;
      const float* dt = dots + (rr * GH + h) * (kTileKeys + 1);
      const float* g = gt + rr * kTileKeys;
      float acc = dws[i];
      for (int cc = 0; cc < kTileKeys; cc++) acc = fmaf(g[cc], fmaxf(dt[cc], 0.f), acc);
      dws[i] = acc;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nr * HD; i += kThreads) a.dqi[qrow0 * HD + i] = dqs[i];
  for (int i = threadIdx.x; i < nr * a.HI; i += kThreads) a.dw[qrow0 * a.HI + i] = dws[i];
}

// One block of loss_keys: the rows [rb, re) of sequence `seq` (a chunk of the range's rows of
// that sequence), whose dki on each key tile goes to part + (key) * dI.
struct KeyJob {
  int32_t seq, pad;
  int64_t rb, re, part;
};
// The reduction of one sequence's chunks: dki of its keys += chunk 0 + chunk 1 + ... in order.
struct KeySum {
  int32_t seq, chunks;
  int64_t part;  // chunk c of key j at (part + c * S + j) * dI
};
constexpr int64_t kChunkRows = 256;

// Blocks per (key tile, chunk of rows): rows go in groups of RB through shared memory (g of the
// tile, qi and w of each row), a thread per (row, head, key) takes the group's dots once, and
// each (key, dim) of dki sums its group's terms in row then head order.
__global__ void __launch_bounds__(kThreads) loss_keys(const LossArgs a, const KeyJob* jobs, int RB,
                                                      float* part) {
  extern __shared__ float sm[];
  // kt [32][dI + 1], dk [32][dI], qi [RB][HI dI], w [RB][HI], g [RB][32], coef [RB][HI][33]
  const int kw = a.dI + 1, HD = a.HI * a.dI;
  float* kt = sm;
  float* dk = kt + kTileKeys * kw;
  float* qis = dk + kTileKeys * a.dI;
  float* ws = qis + RB * HD;
  float* gt = ws + RB * a.HI;
  float* coef = gt + RB * kTileKeys;
  const KeyJob jb = jobs[blockIdx.y];
  const DSeq s = a.seqs[jb.seq];
  const int64_t j0 = int64_t(blockIdx.x) * kTileKeys;
  if (j0 >= s.S) return;
  const int nk = s.S - j0 < kTileKeys ? int(s.S - j0) : kTileKeys;
  float* out = part + (jb.part + j0) * a.dI;
  // Dense and causal: rows that see none of the tile's keys contribute nothing. (A key list is
  // the mask, causal or not: it may name any key.)
  if (a.causal && !a.idx && visible_keys(s, jb.re - 1 - s.r0, true) <= j0) {
    for (int i = threadIdx.x; i < nk * a.dI; i += kThreads) out[i] = 0.f;
    return;
  }
  for (int i = threadIdx.x; i < kTileKeys * a.dI; i += kThreads) {
    const int c = i / a.dI, e = i % a.dI;
    kt[c * kw + e] = c < nk ? load1(a.ki.data, a.ki.dt, a.ki.offset(s.batch, s.k_start + j0 + c, 0) + e) : 0.f;
    dk[i] = 0.f;
  }
  for (int64_t r = jb.rb; r < jb.re; r += RB) {
    const int nr = jb.re - r < RB ? int(jb.re - r) : RB;
    bool nz = false;
    for (int i = threadIdx.x; i < RB * kTileKeys; i += kThreads) {
      const int rr = i / kTileKeys, c = i % kTileKeys;
      const float g = rr < nr && c < nk ? a.P[(r + rr - a.r0) * a.L + j0 + c] : 0.f;
      gt[i] = g;
      nz |= g != 0.f;
    }
    if (!__syncthreads_or(nz)) continue;
    for (int i = threadIdx.x; i < nr * HD; i += kThreads) {
      const int rr = i / HD, he = i % HD;
      qis[i] = load1(a.qi.data, a.qi.dt, a.qi.offset(s.batch, s.q_start + (r + rr - s.r0), he / a.dI) + he % a.dI);
    }
    for (int i = threadIdx.x; i < nr * a.HI; i += kThreads) {
      const int rr = i / a.HI;
      const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + (r + rr - s.r0);
      ws[i] = a.w[qrow * a.HI + i % a.HI];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nr * a.HI * kTileKeys; i += kThreads) {
      const int c = i % kTileKeys, rh = i / kTileKeys;  // rh = rr * HI + h
      const float* q = qis + rh * a.dI;
      const float* k = kt + c * kw;
      float d = 0.f;
      for (int e = 0; e < a.dI; e++) d = fmaf(q[e], k[e], d);
      coef[rh * (kTileKeys + 1) + c] = d > 0.f ? gt[(rh / a.HI) * kTileKeys + c] * ws[rh] : 0.f;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kTileKeys * a.dI; i += kThreads) {
      const int c = i / a.dI, e = i % a.dI;
      float acc = dk[i];
      for (int rh = 0; rh < nr * a.HI; rh++) acc = fmaf(coef[rh * (kTileKeys + 1) + c], qis[rh * a.dI + e], acc);
      dk[i] = acc;
    }
    __syncthreads();  // qis, ws, gt and coef are rewritten by the next group
  }
  for (int i = threadIdx.x; i < nk * a.dI; i += kThreads) out[i] = dk[i];
}

// dki of a sequence's keys += its chunks' sums, chunk by chunk (ranges run in order, so every
// element's sum has one fixed order).
__global__ void __launch_bounds__(kThreads) loss_keys_sum(const LossArgs a, const KeySum* sums,
                                                          const float* part) {
  const KeySum ks = sums[blockIdx.y];
  const DSeq s = a.seqs[ks.seq];
  const int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= int64_t(s.S) * a.dI) return;
  float* d = a.dki + (int64_t(s.batch) * a.Smax + s.k_start) * a.dI + i;
  float acc = *d;
  for (int c = 0; c < ks.chunks; c++) acc += part[(ks.part + int64_t(c) * s.S) * a.dI + i];
  *d = acc;
}

}  // namespace

void indexer_loss(const IndexerLossParams& lp) {
  const AttnParams& p = lp.a;
  SeqTable st = upload_seqs(p);
  LossArgs a{};
  a.seqs = st.d;
  a.nseq = st.n;
  a.Hq = p.Hq;
  a.G = p.group();
  a.D = p.D;
  a.HI = lp.HI;
  a.dI = lp.dI;
  a.Tq = p.Tq;
  a.Smax = p.Smax;
  a.K = lp.K;
  a.scale = p.scale;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.qi = drows(lp.qi);
  a.ki = drows(lp.ki);
  a.lse = p.lse;
  a.w = lp.w;
  a.idx = lp.idx;
  a.loss = lp.loss;
  a.dqi = lp.dqi;
  a.dw = lp.dw;
  a.dki = lp.dki;
  int64_t L = 1;
  for (int i = 0; i < p.nseq; i++) L = std::max<int64_t>(L, p.seqs[i].S);
  a.L = L;
  if (lp.dki) TOPK_CUDA(cudaMemsetAsync(lp.dki, 0, size_t(lp.B * p.Smax * lp.dI) * 4, stream()));
  if (st.rows == 0) return;
  // Rows per block of the row kernel: as many as fit (up to 8, a warp each) beside the tile.
  const size_t row_fixed = (size_t(kTileKeys) * (std::max(p.D, lp.dI) + 1) + 16 + 32) * 4;
  const size_t row_one = (size_t(p.Hq) * p.D + 2 * size_t(lp.HI) * lp.dI + 2 * size_t(lp.HI) + p.Hq +
                          size_t(std::max(p.group(), lp.HI)) * (kTileKeys + 1) + kTileKeys) * 4;
  const int RQ = int(std::clamp<int64_t>((int64_t(160 * 1024) - int64_t(row_fixed)) / int64_t(row_one), 1, 8));
  const size_t row_smem = row_fixed + size_t(RQ) * row_one;
  // Rows per group of the key kernel: as many as fit (up to 8) beside the tile.
  const size_t key_fixed = size_t(kTileKeys) * (2 * lp.dI + 1) * 4;
  const size_t key_row = (size_t(lp.HI) * lp.dI + lp.HI + kTileKeys + size_t(lp.HI) * (kTileKeys + 1)) * 4;
  const int RB = int(std::clamp<int64_t>((int64_t(160 * 1024) - int64_t(key_fixed)) / int64_t(key_row), 1, 8));
  const size_t key_smem = key_fixed + size_t(RB) * key_row;
  TOPK_CHECK(row_smem <= kMaxBlockSmem && key_smem <= kMaxBlockSmem, "indexer_loss: Hq = %d heads of D = "
             "%d and HI = %d of dI = %d do not fit the CUDA kernels' shared memory", p.Hq, p.D,
             lp.HI, lp.dI);
  TOPK_CHECK(p.nseq <= 65535, "indexer_loss: %d sequences are more than one CUDA launch takes",
             p.nseq);
  allow_smem(loss_rows, row_smem);
  allow_smem(loss_keys, key_smem);
  // Rows per range: the two work arrays of L floats per row, and the key kernel's partial sums
  // (dI floats per key for each chunk of kChunkRows rows), within the budget.
  const int64_t per_row = 8 * L + (lp.dki ? 4 * L * lp.dI / kChunkRows + 1 : 0);
  const int64_t step = std::max<int64_t>(1, int64_t(workspace_budget()) / per_row);
  std::vector<char> tab;
  for (int64_t r0 = 0; r0 < st.rows; r0 += step) {
    const int64_t r1 = std::min(st.rows, r0 + step);
    a.r0 = r0;
    a.r1 = r1;
    a.P = static_cast<float*>(workspace(kWsScores, size_t((r1 - r0) * L) * 4));
    a.I = static_cast<float*>(workspace(kWsRank, size_t((r1 - r0) * L) * 4));
    // The range's rows of each sequence: RQ at a time for the row kernel, and chunks of
    // kChunkRows for the key kernel, each chunk's partial dki holding the sequence's S keys.
    std::vector<RowJob> rows;
    std::vector<KeyJob> jobs;
    std::vector<KeySum> sums;
    int64_t keys = 0, seq_r0 = 0, smax = 0;
    for (int i = 0; i < p.nseq; i++) {
      const SeqDesc& sd = p.seqs[i];
      const int64_t rb = std::max(r0, seq_r0), re = std::min(r1, seq_r0 + sd.T);
      seq_r0 += sd.T;
      if (rb >= re) continue;
      for (int64_t r = rb; r < re; r += RQ) rows.push_back({i, int32_t(std::min<int64_t>(RQ, re - r)), r});
      if (sd.S == 0) continue;
      KeySum ks{i, 0, keys};
      for (int64_t c = rb; c < re; c += kChunkRows, ks.chunks++, keys += sd.S)
        jobs.push_back({i, 0, c, std::min(re, c + kChunkRows), keys});
      sums.push_back(ks);
      smax = std::max<int64_t>(smax, sd.S);
    }
    TOPK_CHECK(jobs.size() <= 65535 && sums.size() <= 65535, "indexer_loss: too many row chunks");
    const size_t rb = rows.size() * sizeof(RowJob), jbb = jobs.size() * sizeof(KeyJob);
    tab.resize(rb + jbb + sums.size() * sizeof(KeySum));
    std::memcpy(tab.data(), rows.data(), rb);
    std::memcpy(tab.data() + rb, jobs.data(), jbb);
    std::memcpy(tab.data() + rb + jbb, sums.data(), sums.size() * sizeof(KeySum));
    const char* dtab = static_cast<const char*>(upload_table(kTabIndexer, tab.data(), tab.size()));
    loss_rows<<<unsigned(rows.size()), kThreads, row_smem, stream()>>>(
        a, reinterpret_cast<const RowJob*>(dtab), RQ);
    TOPK_CUDA_LAUNCH();
    if (!lp.dki || jobs.empty()) continue;
    float* partial = static_cast<float*>(workspace(kWsPartial, size_t(keys * lp.dI) * 4));
    loss_keys<<<dim3(unsigned((smax + kTileKeys - 1) / kTileKeys), unsigned(jobs.size())), kThreads,
                key_smem, stream()>>>(a, reinterpret_cast<const KeyJob*>(dtab + rb), RB, partial);
    TOPK_CUDA_LAUNCH();
    loss_keys_sum<<<dim3(unsigned((smax * lp.dI + kThreads - 1) / kThreads), unsigned(sums.size())),
                    kThreads, 0, stream()>>>(
        a, reinterpret_cast<const KeySum*>(dtab + rb + jbb), partial);
    TOPK_CUDA_LAUNCH();
  }
}

}  // namespace topk::cuda
