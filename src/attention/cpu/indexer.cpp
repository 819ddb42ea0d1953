// The Lightning Indexer on the CPU: scores I(t, s) = sum_j w_j ReLU(qi_j . ki_s), and the
// distillation loss with its gradient. Each query row's HI indexer heads are the rows of the
// SIMD dot kernels (dot_nrows_keys), 4 keys at a time. Every sum runs in a fixed order, so the
// results do not depend on the thread count.
#include "attention/approx.h"
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {

namespace {

constexpr int64_t kChunk = 1024;  // keys per work item of the scores
constexpr int64_t kKeyBlock = 64; // keys per work item of the dki pass

// The HI rows of qi of query t of sequence s as fp32, [HI, dI].
TOPK_TARGET void load_rows(const Rows& r, const SeqDesc& s, int64_t t, int H, int D, float* out) {
  for (int h = 0; h < H; h++) to_f32(r.data, r.dtype, r.offset(s.batch, s.q_start + t, h), D, out + int64_t(h) * D);
}

// dots[j * nk + c] = qi_j . key c for the nk (<= 4) keys and every head j.
TOPK_TARGET void head_dots(const float* Q, int HI, int dI, const float* const* keys, int nk,
                           float* dots) {
  switch (nk) {
    case 4: dot_nrows_keys<4, float>(Q, dI, HI, keys, dI, 1.0f, dots, 4); break;
    case 3: dot_nrows_keys<3, float>(Q, dI, HI, keys, dI, 1.0f, dots, 3); break;
    case 2: dot_nrows_keys<2, float>(Q, dI, HI, keys, dI, 1.0f, dots, 2); break;
    default: dot_nrows_keys<1, float>(Q, dI, HI, keys, dI, 1.0f, dots, 1); break;
  }
}

// I for nk keys from their head dots (layout of head_dots).
TOPK_TARGET void combine(const float* dots, const float* w, int HI, int nk, float* I) {
  for (int c = 0; c < nk; c++) {
    float acc = 0;
    for (int j = 0; j < HI; j++) acc += w[j] * std::max(dots[j * nk + c], 0.0f);
    I[c] = acc;
  }
}

// Scores of keys [j0, j1) of sequence s for query row t into out[j]. FP8 keys: the dots over
// the stored values, then I times the key's scale (ReLU commutes with a positive scale).
TOPK_TARGET void score_keys(const IndexerParams& ip, const SeqDesc& s, const float* Q, const float* w,
                            int64_t j0, int64_t j1, float* out, float* kbuf, float* dots) {
  const AttnParams& p = ip.a;
  const int HI = p.Hq, dI = p.D;
  for (int64_t j = j0; j < j1; j += 4) {
    const int nk = int(std::min<int64_t>(4, j1 - j));
    const float* keys[4];
    for (int c = 0; c < nk; c++) keys[c] = row_f32(p.k, s.batch, s.k_start + j + c, 0, dI, kbuf + c * dI);
    head_dots(Q, HI, dI, keys, nk, dots);
    combine(dots, w, HI, nk, out + j);
    if (ip.kscale)
      for (int c = 0; c < nk; c++) out[j + c] *= ip.kscale[s.batch * ip.kscale_sb + s.k_start + j + c];
  }
}

}  // namespace

TOPK_TARGET void indexer_scores(const IndexerParams& ip) {
  const AttnParams& p = ip.a;
  struct Item { int seq; int64_t t, ja, jb; };
  std::vector<Item> items;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    for (int64_t t = 0; t < s.T; t++) {
      const int64_t n = p.visible(s, t);
      for (int64_t ja = 0; ja == 0 || ja < n; ja += kChunk) items.push_back({si, t, ja, std::min(n, ja + kChunk)});
    }
  }
#pragma omp parallel
  {
    std::vector<float> Q(static_cast<size_t>(p.Hq) * p.D), kbuf(4 * size_t(p.D)), dots(4 * size_t(p.Hq));
#pragma omp for schedule(dynamic, 4)
    for (size_t i = 0; i < items.size(); i++) {
      const Item& it = items[i];
      const SeqDesc& s = p.seqs[it.seq];
      load_rows(p.q, s, it.t, p.Hq, p.D, Q.data());
      float* row = ip.scores + p.qrow(s, it.t) * p.Smax;
      score_keys(ip, s, Q.data(), ip.w + p.qrow(s, it.t) * p.Hq, it.ja, it.jb, row, kbuf.data(), dots.data());
      if (it.ja == 0)  // the never-visible tail, once per row
        for (int64_t j = std::max(it.jb, p.visible(s, it.t)); j < p.Smax; j++) row[j] = -kInfF;
    }
  }
}

TOPK_TARGET void quantize_keys(const QuantizeKeysParams& qp) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < qp.B * qp.S; r++) {
    const int64_t b = r / qp.S, s = r % qp.S;
    const int64_t off = qp.x.offset(b, s, 0);
    float amax = 0.0f;
    for (int d = 0; d < qp.dI; d++) amax = std::max(amax, std::fabs(load_f32(qp.x.data, qp.x.dtype, off + d)));
    const float scale = fp8_row_scale(amax);
    uint8_t* q = qp.q8 + b * qp.q8_sb + s * qp.q8_st;
    for (int d = 0; d < qp.dI; d++) q[d] = f32_to_fp8e4m3(load_f32(qp.x.data, qp.x.dtype, off + d) / scale);
    qp.scale[b * qp.scale_sb + s * qp.scale_st] = scale;
  }
}

TOPK_TARGET void indexer_loss(const IndexerLossParams& lp) {
  const AttnParams& p = lp.a;
  const int HI = lp.HI, dI = lp.dI, G = p.group();
  // Per-row gradient wrt I, dense over each sequence's own keys: g(t, s) at goff[seq] + t * S + s.
  std::vector<int64_t> goff(static_cast<size_t>(p.nseq) + 1, 0);
  for (int si = 0; si < p.nseq; si++) goff[size_t(si) + 1] = goff[size_t(si)] + int64_t(p.seqs[si].T) * p.seqs[si].S;
  std::vector<float> gI(lp.dki ? size_t(goff.back()) : 0, 0.0f);
  struct Row { int seq; int64_t t; };
  std::vector<Row> rows;
  for (int si = 0; si < p.nseq; si++)
    for (int64_t t = 0; t < p.seqs[si].T; t++) rows.push_back({si, t});

#pragma omp parallel
  {
    std::vector<float> Qi(static_cast<size_t>(HI) * dI), Q(static_cast<size_t>(p.Hq) * p.D), kbuf(4 * size_t(dI)),
        mk(static_cast<size_t>(p.D)), sc(static_cast<size_t>(p.Hq)), dots, I, tp, dq(static_cast<size_t>(HI) * dI), dwr(static_cast<size_t>(HI));
    std::vector<int64_t> keys;
    std::vector<char> seen;
#pragma omp for schedule(dynamic, 1)
    for (size_t ri = 0; ri < rows.size(); ri++) {
      const SeqDesc& s = p.seqs[rows[ri].seq];
      const int64_t t = rows[ri].t, r = p.qrow(s, t);
      keys.clear();
      if (!lp.idx) {
        for (int64_t j = 0; j < p.visible(s, t); j++) keys.push_back(j);
      } else {
        seen.assign(size_t(s.S), 0);
        for (int64_t i = 0; i < lp.K; i++) {
          const int32_t j = lp.idx[r * lp.K + i];
          if (j >= 0 && j < s.S && !seen[size_t(j)]) seen[size_t(j)] = 1;
        }
        for (int64_t j = 0; j < s.S; j++)
          if (seen[size_t(j)]) keys.push_back(j);
      }
      const int64_t m = int64_t(keys.size());
      // Target: head-mean attention probability of each key of the set.
      tp.assign(size_t(m), 0.0f);
      load_rows(p.q, s, t, p.Hq, p.D, Q.data());
      const float* lse = p.lse + r * p.Hq;
      double tsum = 0;
      for (int64_t i = 0; i < m; i++) {
        float acc = 0;
        for (int g = 0; g < p.Hkv; g++) {
          const float* krow = row_f32(p.k, s.batch, s.k_start + keys[size_t(i)], g, p.D, mk.data());
          dot_nrows(Q.data() + int64_t(g) * G * p.D, p.D, G, krow, p.D, p.scale, sc.data() + g * G, 1);
        }
        for (int h = 0; h < p.Hq; h++) acc += std::exp(sc[size_t(h)] - lse[h]);
        tp[size_t(i)] = acc;
        tsum += acc;
      }
      // Indexer scores of the set, keeping every head's dot for the gradient.
      load_rows(lp.qi, s, t, HI, dI, Qi.data());
      const float* w = lp.w + r * HI;
      dots.resize(size_t(m) * HI);
      I.resize(size_t(m));
      std::vector<float> kd(4 * size_t(HI));
      for (int64_t i = 0; i < m; i += 4) {
        const int nk = int(std::min<int64_t>(4, m - i));
        const float* kr[4];
        for (int c = 0; c < nk; c++) kr[c] = row_f32(lp.ki, s.batch, s.k_start + keys[size_t(i + c)], 0, dI, kbuf.data() + c * dI);
        head_dots(Qi.data(), HI, dI, kr, nk, kd.data());
        combine(kd.data(), w, HI, nk, I.data() + i);
        for (int c = 0; c < nk; c++)
          for (int j = 0; j < HI; j++) dots[size_t(i + c) * HI + j] = kd[size_t(j) * nk + c];
      }
      const bool live = m > 0 && tsum > 0 && std::isfinite(tsum);
      float mx = -kInfF;
      for (int64_t i = 0; i < m; i++) mx = std::max(mx, I[size_t(i)]);
      double se = 0;
      for (int64_t i = 0; i < m; i++) se += std::exp(double(I[size_t(i)]) - mx);
      const double lseI = double(mx) + std::log(se);
      double loss = 0;
      std::fill(dq.begin(), dq.end(), 0.0f);
      std::fill(dwr.begin(), dwr.end(), 0.0f);
      float* grow = lp.dki ? gI.data() + goff[size_t(rows[ri].seq)] + t * s.S : nullptr;
      for (int64_t i = 0; live && i < m; i++) {
        const double pt = double(tp[size_t(i)]) / tsum;
        if (pt > 0) loss += pt * (std::log(pt) - (double(I[size_t(i)]) - lseI));
        const float g = float(std::exp(double(I[size_t(i)]) - lseI) - pt);
        if (!lp.dqi || g == 0) continue;
        grow[keys[size_t(i)]] = g;
        const float* kr = row_f32(lp.ki, s.batch, s.k_start + keys[size_t(i)], 0, dI, kbuf.data());
        for (int j = 0; j < HI; j++) {
          const float dj = dots[size_t(i) * HI + j];
          if (dj <= 0) continue;
          dwr[size_t(j)] += g * dj;
          axpy(dq.data() + int64_t(j) * dI, g * w[j], kr, dI);
        }
      }
      lp.loss[r] = float(loss);
      if (!lp.dqi) continue;
      std::copy(dq.begin(), dq.end(), lp.dqi + r * HI * dI);
      std::copy(dwr.begin(), dwr.end(), lp.dw + r * HI);
    }
  }
  if (!lp.dki) return;

  // dki: each key sums over the rows of its sequence in row order (never over threads).
  std::fill(lp.dki, lp.dki + lp.B * p.Smax * dI, 0.0f);
  struct Blk { int seq; int64_t j0, j1; };
  std::vector<Blk> blks;
  for (int si = 0; si < p.nseq; si++)
    for (int64_t j0 = 0; j0 < p.seqs[si].S; j0 += kKeyBlock)
      blks.push_back({si, j0, std::min<int64_t>(p.seqs[si].S, j0 + kKeyBlock)});
#pragma omp parallel
  {
    std::vector<float> Qi(static_cast<size_t>(HI) * dI), kbuf(static_cast<size_t>(dI)), dots(static_cast<size_t>(HI)), kf(kKeyBlock * size_t(dI));
#pragma omp for schedule(dynamic, 1)
    for (size_t bi = 0; bi < blks.size(); bi++) {
      const Blk& b = blks[bi];
      const SeqDesc& s = p.seqs[b.seq];
      for (int64_t j = b.j0; j < b.j1; j++)
        to_f32(lp.ki.data, lp.ki.dtype, lp.ki.offset(s.batch, s.k_start + j, 0), dI, kf.data() + (j - b.j0) * dI);
      for (int64_t t = 0; t < s.T; t++) {
        const float* grow = gI.data() + goff[size_t(b.seq)] + t * s.S;
        bool any = false;
        for (int64_t j = b.j0; j < b.j1 && !any; j++) any = grow[j] != 0;
        if (!any) continue;
        load_rows(lp.qi, s, t, HI, dI, Qi.data());
        const float* w = lp.w + p.qrow(s, t) * HI;
        for (int64_t j = b.j0; j < b.j1; j++) {
          if (grow[j] == 0) continue;
          const float* kr = kf.data() + (j - b.j0) * dI;
          dot_nrows(Qi.data(), dI, HI, kr, dI, 1.0f, dots.data(), 1);
          float* dk = lp.dki + p.krow(s, j) * dI;
          for (int h = 0; h < HI; h++)
            if (dots[size_t(h)] > 0) axpy(dk, grow[j] * w[h], Qi.data() + int64_t(h) * dI, dI);
        }
      }
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
