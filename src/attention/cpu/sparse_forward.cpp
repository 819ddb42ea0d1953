// CPU sparse attention forward over given indices. Work item = one selection row (query t,
// selection head hs): its valid indices are gathered once, each selected K/V row is loaded
// once and used by every query head that shares the selection (all G heads of the group for
// a group-shared selection, one head otherwise). Duplicates count once per appearance.
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {
namespace {
constexpr int kBk = 64;  // selected rows per block
}

TOPK_TARGET void sparse_forward(const AttnParams& p) {
  int G = p.group(), D = p.D, Gs = p.Hq / p.Hsel;
  std::vector<std::pair<int, int64_t>> qrows;  // (sequence, t)
  for (int si = 0; si < p.nseq; si++)
    for (int64_t t = 0; t < p.seqs[si].T; t++) qrows.push_back({si, t});
  int64_t nrows = int64_t(qrows.size()) * p.Hsel;
#pragma omp parallel
  {
    std::vector<int32_t> keys;
    std::vector<float> Q, S, acc, kbuf(D), vbuf(size_t(kBk) * D), m, l;
    std::vector<const float*> vptr(kBk);
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nrows; i++) {
      const SeqDesc& s = p.seqs[qrows[i / p.Hsel].first];
      int64_t t = qrows[i / p.Hsel].second;
      int hs = int(i % p.Hsel), h0 = hs * Gs, kh = h0 / G;
      const int32_t* row = p.idx + (p.qrow(s, t) * p.Hsel + hs) * p.K;
      keys.clear();
      for (int64_t c = 0; c < p.K; c++)
        if (row[c] >= 0 && row[c] < s.S) keys.push_back(row[c]);
      int64_t n = int64_t(keys.size());
      Q.resize(size_t(Gs) * D);
      for (int g = 0; g < Gs; g++)
        to_f32(p.q.data, p.q.dtype, p.q.offset(s.batch, s.q_start + t, h0 + g), D, &Q[size_t(g) * D]);
      // Scores of the Gs heads over the n keys, then a plain (two-pass) softmax per head.
      S.resize(size_t(Gs) * std::max<int64_t>(n, 1));
      for (int64_t c = 0; c < n; c++) {
        const float* k = row_f32(p.k, s.batch, s.k_start + keys[c], kh, D, kbuf.data());
        dot_nrows(Q.data(), D, Gs, k, D, p.scale, S.data() + c, n);
      }
      m.resize(Gs);
      l.resize(Gs);
      for (int g = 0; g < Gs; g++) {
        float* sr = S.data() + int64_t(g) * n;
        m[g] = row_max(sr, n);
        if (m[g] == -kInfF) {
          std::fill(sr, sr + n, 0.0f);
          l[g] = 0;
        } else {
          l[g] = exp_sub_sum(sr, n, m[g]);
        }
      }
      acc.assign(size_t(Gs) * D, 0.0f);
      for (int64_t c0 = 0; c0 < n; c0 += kBk) {
        int nk = int(std::min<int64_t>(kBk, n - c0));
        for (int j = 0; j < nk; j++)
          vptr[j] = row_f32(p.v, s.batch, s.k_start + keys[c0 + j], kh, D, &vbuf[size_t(j) * D]);
        pv_nrows(acc.data(), D, Gs, S.data() + c0, n, vptr.data(), nk, D);
      }
      for (int g = 0; g < Gs; g++) write_row(p, s, t, h0 + g, &acc[size_t(g) * D], m[g], l[g]);
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
