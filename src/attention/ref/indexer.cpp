// The Lightning Indexer's scores and distillation loss, literally (double accumulation): the
// specification the CPU and CUDA backends are tested against.
#include <algorithm>

#include "attention/approx.h"
#include "attention/ref/common.h"

namespace topk::ref {

namespace {

// I(t, s) = sum_j w_j ReLU(qi_j . ki_s); dots[j] receives qi_j . ki_s.
double index_score(const std::vector<std::vector<double>>& qi, const float* w,
                   const std::vector<double>& ki, std::vector<double>& dots) {
  double I = 0;
  for (size_t j = 0; j < qi.size(); j++) {
    dots[j] = dot(qi[j], ki);
    if (dots[j] > 0) I += double(w[j]) * dots[j];
  }
  return I;
}

}  // namespace

void indexer_scores(const IndexerParams& ip) {
  const AttnParams& p = ip.a;
  std::vector<double> dots(static_cast<size_t>(p.Hq));
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      const int64_t n = p.visible(s, t);
      std::vector<std::vector<double>> qi;
      for (int h = 0; h < p.Hq; h++) qi.push_back(load_vec(p.q, s.batch, s.q_start + t, h, p.D));
      const float* w = ip.w + p.qrow(s, t) * p.Hq;
      float* row = ip.scores + p.qrow(s, t) * p.Smax;
      for (int64_t j = 0; j < p.Smax; j++) {
        if (j >= n) {
          row[j] = -std::numeric_limits<float>::infinity();
          continue;
        }
        // FP8 keys stand for scale * stored value (the scale and the value as stored, f32).
        std::vector<double> ki = load_vec(p.k, s.batch, s.k_start + j, 0, p.D);
        if (ip.kscale)
          for (double& x : ki) x *= double(ip.kscale[s.batch * ip.kscale_sb + s.k_start + j]);
        row[j] = float(index_score(qi, w, ki, dots));
      }
    }
  }
}

void indexer_loss(const IndexerLossParams& lp) {
  const AttnParams& p = lp.a;
  const int HI = lp.HI, dI = lp.dI;
  // dki sums over rows of every sequence: accumulate in double per key row, write at the end.
  std::vector<std::vector<double>> dk_acc(static_cast<size_t>(p.nseq));
  for (int si = 0; si < p.nseq; si++) dk_acc[size_t(si)].assign(size_t(p.seqs[si].S) * dI, 0.0);
  std::vector<double> dots(static_cast<size_t>(HI));
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      const int64_t r = p.qrow(s, t);
      // The key set: every visible key, or the row's valid listed keys (once each, ascending).
      std::vector<int64_t> keys;
      if (!lp.idx) {
        for (int64_t j = 0; j < p.visible(s, t); j++) keys.push_back(j);
      } else {
        for (int64_t i = 0; i < lp.K; i++) {
          const int32_t j = lp.idx[r * lp.K + i];
          if (j >= 0 && j < s.S) keys.push_back(j);
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      }
      const int64_t m = int64_t(keys.size());
      // Target: the head-mean of the attention probabilities, L1-normalised over the set.
      std::vector<double> tp(static_cast<size_t>(m), 0.0);
      for (int h = 0; h < p.Hq; h++) {
        auto q = load_vec(p.q, s.batch, s.q_start + t, h, p.D);
        const double lse = p.lse[r * p.Hq + h];
        for (int64_t i = 0; i < m; i++)
          tp[size_t(i)] += std::exp(p.scale * dot(q, load_vec(p.k, s.batch, s.k_start + keys[size_t(i)],
                                                               h / p.group(), p.D)) - lse);
      }
      double tsum = 0;
      for (double x : tp) tsum += x;
      std::vector<std::vector<double>> qi;
      for (int j = 0; j < HI; j++) qi.push_back(load_vec(lp.qi, s.batch, s.q_start + t, j, dI));
      const float* w = lp.w + r * HI;
      std::vector<double> I(static_cast<size_t>(m));
      std::vector<std::vector<double>> kis(static_cast<size_t>(m));
      double mx = -kInf;
      for (int64_t i = 0; i < m; i++) {
        kis[size_t(i)] = load_vec(lp.ki, s.batch, s.k_start + keys[size_t(i)], 0, dI);
        I[size_t(i)] = index_score(qi, w, kis[size_t(i)], dots);
        mx = std::max(mx, I[size_t(i)]);
      }
      const bool live = m > 0 && tsum > 0 && std::isfinite(tsum);
      double sum = 0;
      for (int64_t i = 0; i < m; i++) sum += std::exp(I[size_t(i)] - mx);
      const double lseI = mx + std::log(sum);
      double loss = 0;
      std::vector<double> G(static_cast<size_t>(m), 0.0);
      if (live) {
        for (int64_t i = 0; i < m; i++) {
          const double pt = tp[size_t(i)] / tsum;
          if (pt > 0) loss += pt * (std::log(pt) - (I[size_t(i)] - lseI));
          G[size_t(i)] = std::exp(I[size_t(i)] - lseI) - pt;
        }
      }
      lp.loss[r] = float(loss);
      if (!lp.dqi) continue;
      std::vector<double> dq(static_cast<size_t>(HI) * dI, 0.0), dwr(static_cast<size_t>(HI), 0.0);
      for (int64_t i = 0; i < m; i++) {
        if (G[size_t(i)] == 0) continue;
        const std::vector<double>& ki = kis[size_t(i)];
        index_score(qi, w, ki, dots);
        double* dk = dk_acc[size_t(si)].data() + keys[size_t(i)] * dI;
        for (int j = 0; j < HI; j++) {
          if (dots[size_t(j)] <= 0) continue;
          dwr[size_t(j)] += G[size_t(i)] * dots[size_t(j)];
          const double c = G[size_t(i)] * double(w[j]);
          for (int d = 0; d < dI; d++) {
            dq[size_t(j) * dI + d] += c * ki[size_t(d)];
            dk[d] += c * qi[size_t(j)][size_t(d)];
          }
        }
      }
      for (int64_t x = 0; x < int64_t(HI) * dI; x++) lp.dqi[r * HI * dI + x] = float(dq[size_t(x)]);
      for (int j = 0; j < HI; j++) lp.dw[r * HI + j] = float(dwr[size_t(j)]);
    }
  }
  if (!lp.dki) return;
  // Whole tensor: zeros, then each sequence's key rows.
  std::fill(lp.dki, lp.dki + lp.B * p.Smax * dI, 0.0f);
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t j = 0; j < s.S; j++)
      for (int d = 0; d < dI; d++)
        lp.dki[p.krow(s, j) * dI + d] = float(dk_acc[size_t(si)][size_t(j) * dI + d]);
  }
}

}  // namespace topk::ref
