// CPU full attention forward: flash-style online softmax over key blocks of kBk keys.
//
// Work item = (sequence, tile of queries, range of KV heads, range of keys). When all query
// heads of a tile fit in kRows rows (decode), one item covers every KV head, so each K/V row is
// read once, in memory order, and used by all G query heads of its group. When there are fewer
// items than kMinItems, the keys are also split into chunks whose partial (max, sum, o) are
// combined afterwards in chunk order (flash-decoding). The split depends only on the shapes,
// never on the thread count, so the result is the same on every run and every machine.
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {
namespace {

constexpr int kBk = 64;              // keys per block: a block of scores stays in L1
constexpr int kRows = 64;            // query rows (queries x heads) per item
constexpr int kMinItems = 64;        // fewer items than this: split the keys too
constexpr int64_t kMinChunk = 1024;  // never split keys finer than this

struct Tile {
  int seq;
  int64_t t0;
  int nt, kh0, kh1;
};

struct Scratch {
  std::vector<float> Q, S, kbuf, vbuf;
  std::vector<const float*> vptr;
};

// Online softmax of the rows of one tile over keys [ja, jb): acc [M, D] (unnormalised), m, l.
TOPK_TARGET void run_tile(const AttnParams& p, const Tile& tl, int64_t ja, int64_t jb, float* acc,
                          float* m, float* l, Scratch& w) {
  const SeqDesc& s = p.seqs[tl.seq];
  int G = p.group(), D = p.D, nh = (tl.kh1 - tl.kh0) * G, M = tl.nt * nh;
  w.Q.resize(size_t(M) * D);
  w.S.resize(size_t(M) * kBk);
  w.kbuf.resize(kKeys * D);
  w.vbuf.resize(size_t(kBk) * D);
  w.vptr.resize(kBk);
  load_q(p, s, tl.t0, tl.nt, tl.kh0, tl.kh1, w.Q.data());
  std::fill(acc, acc + int64_t(M) * D, 0.0f);
  std::fill(m, m + M, -kInfF);
  std::fill(l, l + M, 0.0f);
  float* S = w.S.data();
  for (int64_t j0 = ja; j0 < jb; j0 += kBk) {
    int nk = int(std::min<int64_t>(kBk, jb - j0));
    score_block(p, s, w.Q.data(), tl.nt, tl.kh0, tl.kh1, nh, tl.kh0 * G, j0, j0 + nk, S, kBk, j0,
                w.kbuf.data(), jb, true);
    for (int r = 0; r < M; r++) {
      float* sr = S + int64_t(r) * kBk;
      int64_t vis = p.visible(s, tl.t0 + r / nh);
      int nv = int(std::clamp<int64_t>(vis - j0, 0, nk));
      float mb = row_max(sr, nv), mn = std::max(m[r], mb);
      if (nv == 0 || mn == -kInfF) {  // nothing visible with weight in this block
        std::fill(sr, sr + nk, 0.0f);
        continue;
      }
      float alpha = std::exp(m[r] - mn);
      float sum = exp_sub_sum(sr, nv, mn);
      std::fill(sr + nv, sr + nk, 0.0f);
      if (alpha != 1.0f) scale_row(acc + int64_t(r) * D, alpha, D);
      l[r] = l[r] * alpha + sum;
      m[r] = mn;
    }
    for (int kh = tl.kh0; kh < tl.kh1; kh++) {
#if TOPK_SIMD == 512
      if (p.v.dtype == DType::bf16) {  // widened in registers, no copy
        const uint16_t* vp[kBk];
        for (int j = 0; j < nk; j++) vp[j] = bf16_row(p.v, s.batch, s.k_start + j0 + j, kh);
        for (int t = 0; t < tl.nt; t++) {
          int64_t r = int64_t(t) * nh + (kh - tl.kh0) * G;
          pv_nrows(acc + r * D, D, G, S + r * kBk, kBk, vp, nk, D);
        }
        continue;
      }
#endif
      for (int j = 0; j < nk; j++)
        w.vptr[j] = row_f32(p.v, s.batch, s.k_start + j0 + j, kh, D, w.vbuf.data() + int64_t(j) * D);
      for (int t = 0; t < tl.nt; t++) {
        int64_t r = int64_t(t) * nh + (kh - tl.kh0) * G;
        pv_nrows(acc + r * D, D, G, S + r * kBk, kBk, w.vptr.data(), nk, D);
      }
    }
  }
}

}  // namespace

TOPK_TARGET void attention_forward(const AttnParams& p) {
  int G = p.group(), D = p.D;
  bool all_heads = p.Hq <= kRows;
  int nt_tile = std::max(1, kRows / (all_heads ? p.Hq : G));
  std::vector<Tile> tiles;
  int64_t Smax = 0;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    Smax = std::max<int64_t>(Smax, s.S);
    for (int64_t t0 = 0; t0 < s.T; t0 += nt_tile) {
      int nt = int(std::min<int64_t>(nt_tile, s.T - t0));
      if (all_heads)
        tiles.push_back({si, t0, nt, 0, p.Hkv});
      else
        for (int kh = 0; kh < p.Hkv; kh++) tiles.push_back({si, t0, nt, kh, kh + 1});
    }
  }
  int64_t ntile = int64_t(tiles.size());
  int64_t nsplit = 1;
  if (ntile < kMinItems)
    nsplit = std::max<int64_t>(1, std::min<int64_t>((kMinItems + ntile - 1) / ntile,
                                                    (Smax + kMinChunk - 1) / kMinChunk));
  int64_t chunk = (Smax + nsplit - 1) / nsplit;
  chunk = std::max<int64_t>(kBk, (chunk + kBk - 1) / kBk * kBk);
  int Mmax = nt_tile * (all_heads ? p.Hq : G);
  // Partial results per (tile, split): acc [Mmax, D], m [Mmax], l [Mmax].
  size_t nitem = size_t(ntile * nsplit);
  static thread_local RawBuf<float> acc_buf, m_buf, l_buf;
  float* acc = acc_buf.get(nitem * Mmax * D);
  float* mm = m_buf.get(nitem * Mmax);
  float* ll = l_buf.get(nitem * Mmax);

#pragma omp parallel
  {
    Scratch w;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < ntile * nsplit; it++) {
      const Tile& tl = tiles[it / nsplit];
      const SeqDesc& s = p.seqs[tl.seq];
      int64_t vis = p.visible(s, tl.t0 + tl.nt - 1);  // the tile's last query sees the most
      int64_t ja = (it % nsplit) * chunk, jb = std::min(vis, ja + chunk);
      run_tile(p, tl, ja, std::max(ja, jb), &acc[size_t(it) * Mmax * D], &mm[size_t(it) * Mmax],
               &ll[size_t(it) * Mmax], w);
    }

    // Combine the chunks of each tile in chunk order and write o, lse.
    std::vector<float> o(D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ti = 0; ti < ntile; ti++) {
      const Tile& tl = tiles[ti];
      const SeqDesc& s = p.seqs[tl.seq];
      int nh = (tl.kh1 - tl.kh0) * G;
      for (int r = 0; r < tl.nt * nh; r++) {
        float M = -kInfF;
        for (int64_t c = 0; c < nsplit; c++) M = std::max(M, mm[size_t(ti * nsplit + c) * Mmax + r]);
        std::fill(o.begin(), o.end(), 0.0f);
        float L = 0;
        if (M != -kInfF) {
          for (int64_t c = 0; c < nsplit; c++) {
            size_t i = size_t(ti * nsplit + c) * Mmax + r;
            if (ll[i] == 0) continue;
            float f = std::exp(mm[i] - M);
            L += ll[i] * f;
            axpy(o.data(), f, &acc[i * D], D);
          }
        }
        write_row(p, s, tl.t0 + r / nh, tl.kh0 * G + r % nh, o.data(), M, L);
      }
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
