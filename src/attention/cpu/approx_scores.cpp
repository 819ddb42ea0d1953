// Quest page bounds, quantised-key scores and score masking on the CPU. Work items are query
// rows (and key chunks); each computes its outputs alone, in a fixed order.
#include "attention/approx.h"
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {

namespace {
constexpr int64_t kChunk = 1024;  // keys per work item of quantized_scores
}  // namespace

TOPK_TARGET void quest_scores(const QuestParams& qp) {
  const AttnParams& p = qp.a;
  const int G = p.group(), D = p.D;
  struct Item { int seq; int64_t t; };
  std::vector<Item> items;
  for (int si = 0; si < p.nseq; si++)
    for (int64_t t = 0; t < p.seqs[si].T; t++) items.push_back({si, t});
#pragma omp parallel
  {
    std::vector<float> Q(static_cast<size_t>(p.Hq) * D), lo, hi, kbuf(static_cast<size_t>(D));
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < items.size(); i++) {
      const SeqDesc& s = p.seqs[items[i].seq];
      const int64_t t = items[i].t, n = p.visible(s, t);
      const int64_t np = (n + qp.page - 1) / qp.page;
      load_q(p, s, t, 1, 0, p.Hkv, Q.data());
      lo.resize(size_t(np) * D);
      hi.resize(size_t(np) * D);
      for (int g = 0; g < p.Hkv; g++) {
        // Bounds of each page over its visible keys (this row sees n of them).
        for (int64_t pg = 0; pg < np; pg++) {
          float* l = lo.data() + pg * D;
          float* h = hi.data() + pg * D;
          std::fill(l, l + D, kInfF);
          std::fill(h, h + D, -kInfF);
          for (int64_t j = pg * qp.page; j < std::min<int64_t>(n, (pg + 1) * qp.page); j++) {
            const float* kr = row_f32(p.k, s.batch, s.k_start + j, g, D, kbuf.data());
            for (int d = 0; d < D; d++) {
              l[d] = std::min(l[d], kr[d]);
              h[d] = std::max(h[d], kr[d]);
            }
          }
        }
        for (int hl = 0; hl < G; hl++) {
          const int hq = g * G + hl;
          const float* q = Q.data() + int64_t(hq) * D;
          float* row = qp.scores + (p.qrow(s, t) * p.Hq + hq) * qp.P;
          for (int64_t pg = 0; pg < np; pg++) {
            const float* l = lo.data() + pg * D;
            const float* h = hi.data() + pg * D;
            float u = 0;
            for (int d = 0; d < D; d++) u += std::max(q[d] * l[d], q[d] * h[d]);
            row[pg] = p.scale * u;
          }
          for (int64_t pg = np; pg < qp.P; pg++) row[pg] = -kInfF;
        }
      }
    }
  }
}

TOPK_TARGET void quantized_scores(const QuantParams& qp) {
  const AttnParams& p = qp.a;
  const int G = p.group(), D = p.D;
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
    std::vector<float> Q(static_cast<size_t>(p.Hq) * D), kbuf(static_cast<size_t>(D)), kq(static_cast<size_t>(D)), sc(static_cast<size_t>(G));
#pragma omp for schedule(dynamic, 4)
    for (size_t i = 0; i < items.size(); i++) {
      const Item& it = items[i];
      const SeqDesc& s = p.seqs[it.seq];
      load_q(p, s, it.t, 1, 0, p.Hkv, Q.data());
      float* out = qp.scores + p.qrow(s, it.t) * p.Hq * p.Smax;
      for (int64_t j = it.ja; j < it.jb; j++) {
        for (int g = 0; g < p.Hkv; g++) {
          const float* kr = row_f32(p.k, s.batch, s.k_start + j, g, D, kbuf.data());
          float amax = 0;
          for (int d = 0; d < D; d++) amax = std::max(amax, std::fabs(kr[d]));
          const float step = quant_step(amax, qp.bits);
          for (int d = 0; d < D; d++) kq[size_t(d)] = quant_value(kr[d], step);
          dot_nrows(Q.data() + int64_t(g) * G * D, D, G, kq.data(), D, p.scale, sc.data(), 1);
          for (int hl = 0; hl < G; hl++) out[int64_t(g * G + hl) * p.Smax + j] = sc[size_t(hl)];
        }
      }
      if (it.ja == 0)
        for (int h = 0; h < p.Hq; h++)
          for (int64_t j = std::max(it.jb, p.visible(s, it.t)); j < p.Smax; j++) out[int64_t(h) * p.Smax + j] = -kInfF;
    }
  }
}

TOPK_TARGET void mask_scores(const MaskParams& mp) {
  const int G = mp.H / mp.Hsel;
#pragma omp parallel
  {
    std::vector<float> keep;
#pragma omp for schedule(static)
    for (int64_t rh = 0; rh < mp.R * mp.H; rh++) {
      const int64_t r = rh / mp.H;
      const int h = int(rh % mp.H);
      const int32_t* list = mp.idx + (r * mp.Hsel + h / G) * mp.C;
      float* row = mp.scores + rh * mp.S;
      // The listed values, then the row cleared, then the listed values back.
      keep.resize(size_t(mp.C));
      for (int64_t i = 0; i < mp.C; i++)
        keep[size_t(i)] = list[i] >= 0 && list[i] < mp.S ? row[list[i]] : 0.0f;
      std::fill(row, row + mp.S, -kInfF);
      for (int64_t i = 0; i < mp.C; i++)
        if (list[i] >= 0 && list[i] < mp.S) row[list[i]] = keep[size_t(i)];
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
