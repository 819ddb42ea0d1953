#include "attention/ref/common.h"

namespace topk::ref {

void attention_scores(const AttnParams& p, float* scores) {
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      int64_t n = p.visible(s, t);
      for (int h = 0; h < p.Hq; h++) {
        auto q = load_vec(p.q, s.batch, s.q_start + t, h, p.D);
        float* row = scores + (p.qrow(s, t) * p.Hq + h) * p.Smax;
        for (int64_t j = 0; j < p.Smax; j++) {
          row[j] = j < n ? float(p.scale * dot(q, load_vec(p.k, s.batch, s.k_start + j,
                                                           h / p.group(), p.D)))
                         : -std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

}  // namespace topk::ref
