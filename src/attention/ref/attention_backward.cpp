#include <algorithm>

#include "attention/ref/common.h"

namespace topk::ref {

// Gradients of o = softmax(scale * q.k) v over each row's key list, using the given o and lse
// (as the fast paths do): dS_j = P_j (dout.v_j - dout.o), dq = scale sum_j dS_j k_j,
// dk_j += scale dS_j q, dv_j += P_j dout.
void backward_rows(const AttnParams& p, bool sparse) {
  int D = p.D;
  int64_t B = 0;
  for (int si = 0; si < p.nseq; si++) B = std::max<int64_t>(B, p.seqs[si].batch + 1);
  // dk and dv are overwritten whole (0 where no query attends); dq only in the rows of the
  // sequences' queries, each written below (rows past seqlens_q[b] are not ours to touch).
  std::vector<double> dk(size_t(B * p.Smax * p.Hkv * D), 0.0), dv(dk.size(), 0.0);
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      for (int h = 0; h < p.Hq; h++) {
        int kh = h / p.group();
        auto keys = row_keys(p, s, t, h, sparse);
        double lse = p.lse[p.qrow(s, t) * p.Hq + h];
        auto q = load_vec(p.q, s.batch, s.q_start + t, h, D);
        auto o = load_vec(p.o, s.batch, s.q_start + t, h, D);
        auto dout = load_vec(p.dout, s.batch, s.q_start + t, h, D);
        double di = dot(dout, o);
        std::vector<double> dq(D, 0.0);
        for (int64_t j : keys) {
          auto k = load_vec(p.k, s.batch, s.k_start + j, kh, D);
          auto v = load_vec(p.v, s.batch, s.k_start + j, kh, D);
          double prob = std::exp(p.scale * dot(q, k) - lse);  // 0 when lse = +inf
          double ds = prob * (dot(dout, v) - di);
          int64_t kr = (p.krow(s, j) * p.Hkv + kh) * D;
          for (int d = 0; d < D; d++) {
            dq[d] += p.scale * ds * k[d];
            dk[kr + d] += p.scale * ds * q[d];
            dv[kr + d] += prob * dout[d];
          }
        }
        float* dqr = p.dq + (p.qrow(s, t) * p.Hq + h) * D;
        for (int d = 0; d < D; d++) dqr[d] = float(dq[d]);
      }
    }
  }
  for (size_t i = 0; i < dk.size(); i++) {
    p.dk[i] = float(dk[i]);
    p.dv[i] = float(dv[i]);
  }
}

void attention_backward(const AttnParams& p) { backward_rows(p, false); }

}  // namespace topk::ref
