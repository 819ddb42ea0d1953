#include "attention/ref/common.h"

namespace topk::ref {

// Shared by full and sparse attention: they differ only in the key list of a row.
void forward_rows(const AttnParams& p, bool sparse) {
  std::vector<double> o, prob;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      for (int h = 0; h < p.Hq; h++) {
        auto keys = row_keys(p, s, t, h, sparse);
        double lse = attend(p, s, t, h, keys, o, prob);
        int64_t off = p.o.offset(s.batch, s.q_start + t, h);
        for (int d = 0; d < p.D; d++) store_f32(p.o_data, p.o.dtype, off + d, float(o[d]));
        p.lse[p.qrow(s, t) * p.Hq + h] = float(lse);
      }
    }
  }
}

void attention_forward(const AttnParams& p) { forward_rows(p, false); }

}  // namespace topk::ref
