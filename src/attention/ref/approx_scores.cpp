// Quest page bounds, quantised-key scores and score masking, literally: the specification.
#include <algorithm>

#include "attention/approx.h"
#include "attention/ref/common.h"

namespace topk::ref {

void quest_scores(const QuestParams& qp) {
  const AttnParams& p = qp.a;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      const int64_t n = p.visible(s, t);
      for (int h = 0; h < p.Hq; h++) {
        auto q = load_vec(p.q, s.batch, s.q_start + t, h, p.D);
        float* row = qp.scores + (p.qrow(s, t) * p.Hq + h) * qp.P;
        for (int64_t pg = 0; pg < qp.P; pg++) {
          const int64_t j0 = pg * qp.page, j1 = std::min<int64_t>(j0 + qp.page, n);
          if (j0 >= j1) {
            row[pg] = ninf;
            continue;
          }
          std::vector<double> lo(static_cast<size_t>(p.D), kInf), hi(static_cast<size_t>(p.D), -kInf);
          for (int64_t j = j0; j < j1; j++) {
            auto k = load_vec(p.k, s.batch, s.k_start + j, h / p.group(), p.D);
            for (int d = 0; d < p.D; d++) {
              lo[size_t(d)] = std::min(lo[size_t(d)], k[size_t(d)]);
              hi[size_t(d)] = std::max(hi[size_t(d)], k[size_t(d)]);
            }
          }
          double u = 0;
          for (int d = 0; d < p.D; d++)
            u += std::max(q[size_t(d)] * lo[size_t(d)], q[size_t(d)] * hi[size_t(d)]);
          row[pg] = float(p.scale * u);
        }
      }
    }
  }
}

void quantized_scores(const QuantParams& qp) {
  const AttnParams& p = qp.a;
  std::vector<double> kq(static_cast<size_t>(p.D));
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      const int64_t n = p.visible(s, t);
      for (int h = 0; h < p.Hq; h++) {
        auto q = load_vec(p.q, s.batch, s.q_start + t, h, p.D);
        float* row = qp.scores + (p.qrow(s, t) * p.Hq + h) * p.Smax;
        for (int64_t j = 0; j < p.Smax; j++) {
          if (j >= n) {
            row[j] = -std::numeric_limits<float>::infinity();
            continue;
          }
          const int64_t off = p.k.offset(s.batch, s.k_start + j, h / p.group());
          float amax = 0;
          for (int d = 0; d < p.D; d++) amax = std::max(amax, std::fabs(load_f32(p.k.data, p.k.dtype, off + d)));
          const float step = quant_step(amax, qp.bits);
          for (int d = 0; d < p.D; d++)
            kq[size_t(d)] = quant_value(load_f32(p.k.data, p.k.dtype, off + d), step);
          row[j] = float(p.scale * dot(q, kq));
        }
      }
    }
  }
}

void mask_scores(const MaskParams& mp) {
  std::vector<char> keep(static_cast<size_t>(mp.S));
  const int G = mp.H / mp.Hsel;
  for (int64_t r = 0; r < mp.R; r++)
    for (int h = 0; h < mp.H; h++) {
      std::fill(keep.begin(), keep.end(), 0);
      const int32_t* list = mp.idx + (r * mp.Hsel + h / G) * mp.C;
      for (int64_t i = 0; i < mp.C; i++)
        if (list[i] >= 0 && list[i] < mp.S) keep[size_t(list[i])] = 1;
      float* row = mp.scores + (r * mp.H + h) * mp.S;
      for (int64_t j = 0; j < mp.S; j++)
        if (!keep[size_t(j)]) row[j] = -std::numeric_limits<float>::infinity();
    }
}

}  // namespace topk::ref
