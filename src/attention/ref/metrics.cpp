#include "attention/ref/common.h"

namespace topk::ref {

static void full_probs(const AttnParams& p, const SeqDesc& s, int64_t t, int h,
                       std::vector<double>& prob) {
  auto q = load_vec(p.q, s.batch, s.q_start + t, h, p.D);
  int64_t n = p.visible(s, t);
  std::vector<double> sc(n);
  for (int64_t j = 0; j < n; j++)
    sc[j] = p.scale * dot(q, load_vec(p.k, s.batch, s.k_start + j, h / p.group(), p.D));
  softmax(sc, prob);
}

void entropy(const AttnParams& p, float* entropy, float* normalized) {
  std::vector<double> prob;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      for (int h = 0; h < p.Hq; h++) {
        full_probs(p, s, t, h, prob);
        double H = 0;
        for (double a : prob)
          if (a > 0) H -= a * std::log(a);
        int64_t n = int64_t(prob.size());
        if (n <= 1) H = 0;
        int64_t r = p.qrow(s, t) * p.Hq + h;
        entropy[r] = float(H);
        if (normalized) normalized[r] = n > 1 ? float(H / std::log(double(n))) : 0.0f;
      }
    }
  }
}

void selection_mass(const AttnParams& p, float* mass) {
  std::vector<double> prob;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      for (int h = 0; h < p.Hq; h++) {
        full_probs(p, s, t, h, prob);
        int64_t n = int64_t(prob.size());
        std::vector<char> seen(n, 0);
        double m = 0;
        for (int64_t key : row_keys(p, s, t, h, true)) {
          if (key < n && !seen[key]) {
            seen[key] = 1;
            m += prob[key];
          }
        }
        mass[p.qrow(s, t) * p.Hq + h] = float(m);
      }
    }
  }
}

}  // namespace topk::ref
