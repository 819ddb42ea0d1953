#include <algorithm>

#include "attention/ref/common.h"

namespace topk::ref {

// Per row: forced sink/window keys, then the best-ranked of the rest up to the budget W,
// written in ascending key order and padded with -1.
void topk_select(const SelectParams& sp) {
  const AttnParams& p = sp.a;
  int G = p.Hq / sp.Hsel;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      int64_t n = p.visible(s, t);
      for (int hs = 0; hs < sp.Hsel; hs++) {
        // Rank value of each visible key: the head's score, or the group's probability sum.
        std::vector<double> rank(n, 0.0);
        for (int g = 0; g < G; g++) {
          int h = hs * G + g;
          const float* row = sp.scores + (p.qrow(s, t) * p.Hq + h) * p.Smax;
          if (G == 1) {
            for (int64_t j = 0; j < n; j++) rank[j] = row[j];
            continue;
          }
          std::vector<double> sc(row, row + n), prob;
          softmax(sc, prob);
          for (int64_t j = 0; j < n; j++) rank[j] += prob[j];
        }
        int64_t W = select_budget(sp.sel, n);
        std::vector<int64_t> chosen, rest;
        for (int64_t j = 0; j < n; j++) (is_forced(sp.sel, n, j) ? chosen : rest).push_back(j);
        int64_t room = W - int64_t(chosen.size());
        if (room > 0) {
          std::sort(rest.begin(), rest.end(), [&](int64_t a, int64_t b) {
            return ranks_before(rank[a], a, rank[b], b);
          });
          chosen.insert(chosen.end(), rest.begin(), rest.begin() + std::min<int64_t>(room, rest.size()));
        }
        std::sort(chosen.begin(), chosen.end());
        int32_t* out = sp.out + (p.qrow(s, t) * sp.Hsel + hs) * sp.K;
        for (int64_t i = 0; i < sp.K; i++) out[i] = i < int64_t(chosen.size()) ? int32_t(chosen[i]) : -1;
      }
    }
  }
}

}  // namespace topk::ref
