// CPU exact scores: blocked dot products. Work item = (sequence, tile of queries, chunk of
// keys); each item loads its queries once and streams its keys once, every KV head of a key
// row together (score_block), so a K row serves all G heads of its group.
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {
namespace {
constexpr int kRows = 64;        // query rows (queries x heads) per tile: Q tile stays in L1/L2
constexpr int64_t kChunk = 2048; // keys per item
}  // namespace

TOPK_TARGET void attention_scores(const AttnParams& p, float* scores) {
  int nt_tile = std::max(1, kRows / p.Hq);
  struct Item { int seq; int64_t t0; int nt; int64_t ja, jb, vis; };
  std::vector<Item> items;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t0 = 0; t0 < s.T; t0 += nt_tile) {
      int nt = int(std::min<int64_t>(nt_tile, s.T - t0));
      // Every column of these rows is written: keys past the tile's last visible one by the
      // first chunk's item (as -inf), the rest by the chunk that computes them.
      int64_t vis = p.visible(s, t0 + nt - 1);
      for (int64_t ja = 0; ja == 0 || ja < vis; ja += kChunk)
        items.push_back({si, t0, nt, ja, std::min(vis, ja + kChunk), vis});
    }
  }
#pragma omp parallel
  {
    std::vector<float> Q, tile, kbuf(kKeys * p.D);
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < items.size(); i++) {
      const Item& it = items[i];
      const SeqDesc& s = p.seqs[it.seq];
      Q.resize(size_t(it.nt) * p.Hq * p.D);
      load_q(p, s, it.t0, it.nt, 0, p.Hkv, Q.data());
      float* out = scores + p.qrow(s, it.t0) * p.Hq * p.Smax;
      tile.resize(size_t(it.nt) * p.Hq * kTile);
      score_rows(p, s, Q.data(), it.nt, 0, p.Hkv, it.ja, it.jb, out, p.Smax, tile.data(),
                 kbuf.data(), it.jb);
      // Causal mask inside the chunk, and the never-visible tail once (first chunk).
      for (int t = 0; t < it.nt; t++) {
        int64_t n = p.visible(s, it.t0 + t);
        for (int h = 0; h < p.Hq; h++) {
          float* row = out + (int64_t(t) * p.Hq + h) * p.Smax;
          for (int64_t j = std::max(n, it.ja); j < it.jb; j++) row[j] = -kInfF;
          if (it.ja == 0)
            for (int64_t j = std::max(n, it.vis); j < p.Smax; j++) row[j] = -kInfF;
        }
      }
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
