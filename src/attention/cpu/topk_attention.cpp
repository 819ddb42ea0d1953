// CPU fused exact top-k attention: for each block of queries of a sequence,
//   1. score: the block's scores, keys in parallel chunks; each chunk streams its K rows once,
//      all KV heads of a row together;
//   2. select: per selection row, the exact top W;
//   3. attend: softmax over the selected scores (no K re-read) and a gather of only the
//      selected V rows.
// For decode (T = 1) this reads K once and V only where selected. The block's [Tb, Hq, n] score
// rows are never more than kScoreFloats floats.
//
// One OpenMP parallel region per call: the threads run the blocks together, step by step (a
// region per step would wake and park the threads twice per block).
#include "attention/cpu/common.h"
#include "attention/cpu/select.h"

namespace topk::cpu::TOPK_ISA {
namespace {

constexpr int64_t kScoreFloats = int64_t(1) << 22;  // score block cap: 16 MiB
constexpr int kMaxTb = 64;                            // queries per block
constexpr int kRows = 64;     // rows (queries x heads) per scoring item with all KV heads
constexpr int64_t kChunk = 1024;  // keys per scoring item
constexpr int kVb = 16;     // V rows gathered per step
constexpr int kAhead = 16;  // V rows prefetched ahead of the step

// Softmax over the selected keys of one selection row and o for each of its nh heads: head
// h0 + g has the scores P[g * n + i] of the keys idx[0..n) (ascending). P is overwritten with
// the probabilities. vbuf [kVb, D], acc [nh, D] scratch.
TOPK_TARGET void attend_row(const AttnParams& p, const SeqDesc& s, int64_t t, int h0, int nh,
                            float* P, const int32_t* idx, int64_t n, std::vector<float>& vbuf,
                            std::vector<float>& acc) {
  int D = p.D;
  acc.assign(size_t(nh) * D, 0.0f);
  vbuf.resize(size_t(kVb) * D);
  float m[64], l[64];  // nh <= G <= Hq; heads beyond 64 are done in several calls
  for (int g = 0; g < nh; g++) {
    float* pr = P + int64_t(g) * n;
    m[g] = row_max(pr, n);
    if (m[g] == -kInfF) {
      std::fill(pr, pr + n, 0.0f);
      l[g] = 0;
    } else {
      l[g] = exp_sub_sum(pr, n, m[g]);
    }
  }
  int kh = h0 / p.group();
#if TOPK_SIMD == 512
  // One head (per-head selection, the decode case) of f32 or bf16 rows: a row at a time.
  if (nh == 1 && D <= 256 && (p.v.dtype == DType::f32 || p.v.dtype == DType::bf16)) {
    int64_t off = p.v.offset(s.batch, s.k_start, kh);
    const void* v = p.v.data;
    if (p.v.dtype == DType::f32)
      gather_pv512(acc.data(), P, idx, n, static_cast<const float*>(v) + off, p.v.st, D, 8);
    else
      gather_pv512(acc.data(), P, idx, n, static_cast<const uint16_t*>(v) + off, p.v.st, D, 8);
    write_row(p, s, t, h0, acc.data(), m[0], l[0]);
    return;
  }
#endif
  // The gather is latency bound: the indices are known, so the rows kAhead ahead are fetched
  // while a step is summed, a few at a time (a burst of prefetches fills the miss queue).
  for (int64_t i = 0; i < std::min<int64_t>(kAhead, n); i++)
    prefetch_row(p.v, s.batch, s.k_start + idx[i], kh, D);
  for (int64_t i0 = 0; i0 < n; i0 += kVb) {
    int nk = int(std::min<int64_t>(kVb, n - i0));
    for (int64_t i = i0 + kAhead; i < std::min<int64_t>(i0 + kAhead + kVb, n); i++)
      prefetch_row(p.v, s.batch, s.k_start + idx[i], kh, D);
#if TOPK_SIMD == 512
    if (p.v.dtype == DType::bf16) {  // widened in registers, no copy
      const uint16_t* vp[kVb];
      for (int j = 0; j < nk; j++) vp[j] = bf16_row(p.v, s.batch, s.k_start + idx[i0 + j], kh);
      pv_nrows(acc.data(), D, nh, P + i0, n, vp, nk, D);
      continue;
    }
#endif
    const float* vptr[kVb];
    for (int j = 0; j < nk; j++)
      vptr[j] = row_f32(p.v, s.batch, s.k_start + idx[i0 + j], kh, D, vbuf.data() + int64_t(j) * D);
    pv_nrows(acc.data(), D, nh, P + i0, n, vptr, nk, D);
  }
  for (int g = 0; g < nh; g++) write_row(p, s, t, h0 + g, acc.data() + int64_t(g) * D, m[g], l[g]);
}

}  // namespace

TOPK_TARGET void topk_attention_forward(const AttnParams& p, const SelectOpts& sel,
                                        int32_t* indices, int64_t K) {
  int D = p.D, Gs = p.Hq / p.Hsel;
  // Score blocks and queries: sized for the longest sequence, kept between calls by the
  // calling thread (a decode loop reuses the same pages).
  static thread_local RawBuf<float> sc_buf, q_buf;
  int64_t Smax = 0;
  for (int si = 0; si < p.nseq; si++) Smax = std::max<int64_t>(Smax, p.seqs[si].S);
  // Row stride: a whole number of cache lines (streaming stores), padded by one line since rows
  // a power of two apart would share one L1 set.
  int64_t ld = (Smax + 15) / 16 * 16 + 16;
  int Tb = int(std::clamp<int64_t>(kScoreFloats / (int64_t(p.Hq) * ld), 1, kMaxTb));
  // Rows start on a cache line, for streaming stores (score_rows).
  float* Sc = sc_buf.get(size_t(Tb) * p.Hq * ld + 16);
  Sc = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(Sc) + 63) & ~uintptr_t(63));
  float* Q = q_buf.get(size_t(Tb) * p.Hq * D);
  int64_t Tmax = 0;
  for (int si = 0; si < p.nseq; si++) Tmax = std::max<int64_t>(Tmax, p.seqs[si].T);
  int es = elem_bytes(p.k.dtype);
#pragma omp parallel
  {
    std::vector<float> kbuf(kKeys * D), tile(size_t(std::min<int64_t>(Tb, Tmax)) * p.Hq * kTile);
    std::vector<float> P, vbuf, acc;
    SelectScratch w;
    for (int si = 0; si < p.nseq; si++) {
      const SeqDesc& s = p.seqs[si];
      for (int64_t t0 = 0; t0 < s.T; t0 += Tb) {
        int nt = int(std::min<int64_t>(Tb, s.T - t0));
        int64_t vis = p.visible(s, t0 + nt - 1);
        int64_t nchunk = (vis + kChunk - 1) / kChunk;
#pragma omp single
        load_q(p, s, t0, nt, 0, p.Hkv, Q);
        // 1. Scores [nt, Hq, vis]: all KV heads per item when the rows are few (decode), so K
        // is read in memory order; one KV head per item otherwise.
        bool all_heads = int64_t(nt) * p.Hq <= kRows;
        int nkh = all_heads ? 1 : p.Hkv;
        // Decode over a long cache: the K stream evicts the score rows before step 2 reads
        // them, so they go to memory with streaming stores (no read for ownership).
        bool stream = nt == 1 && vis * p.Hkv * D * es > (int64_t(16) << 20);
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < nchunk * nkh; it++) {
          int64_t ja = (it / nkh) * kChunk, jb = std::min(vis, ja + kChunk);
          int kh0 = all_heads ? 0 : int(it % nkh), kh1 = all_heads ? p.Hkv : kh0 + 1;
          score_rows(p, s, Q, nt, kh0, kh1, ja, jb, Sc, ld, tile.data(), kbuf.data(),
                     std::min(vis, jb + kPrefetch), stream);
        }
        // 2 + 3. Per selection row i = (t - t0) * Hsel + hs: select, then attend with the
        // heads that share the selection.
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < int64_t(nt) * p.Hsel; i++) {
          int64_t t = t0 + i / p.Hsel;
          int hs = int(i % p.Hsel);
          int64_t n = p.visible(s, t);
          const float* row = Sc + ((t - t0) * p.Hq + int64_t(hs) * Gs) * ld;
          int32_t* out = indices + (p.qrow(s, t) * p.Hsel + hs) * K;
          if (Gs == 1) {
            select_row(row, n, sel, out, K, w);
          } else {
            w.rank.resize(n);
            group_rank(row, ld, Gs, n, w.rank.data());
            select_row(w.rank.data(), n, sel, out, K, w);
          }
          int64_t m = 0;
          while (m < K && out[m] >= 0) m++;
          for (int g0 = 0; g0 < Gs; g0 += 64) {
            int nh = std::min(64, Gs - g0);
            P.resize(size_t(nh) * std::max<int64_t>(m, 1));
            for (int g = 0; g < nh; g++)
              for (int64_t j = 0; j < m; j++) P[g * m + j] = row[(g0 + g) * ld + out[j]];
            attend_row(p, s, t, hs * Gs + g0, nh, P.data(), out, m, vbuf, acc);
          }
        }
      }
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
