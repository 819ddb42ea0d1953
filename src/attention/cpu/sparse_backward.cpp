// CPU sparse attention backward over given indices. Work item = (sequence, KV head): every
// index of the rows of its G query heads points at that KV head's rows of that sequence, so
// the item alone writes those dk/dv rows (no races, fixed order, deterministic). Per row:
// p_j = exp(scale q.k_j - lse), dS_j = p_j (dout.v_j - dout.o); each appearance counts.
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {

TOPK_TARGET void sparse_backward(const AttnParams& p) {
  int64_t B = batches(p);
  int G = p.group(), D = p.D;
  zero_dq_rows(p);
  std::fill(p.dk, p.dk + B * p.Smax * p.Hkv * D, 0.0f);
  std::fill(p.dv, p.dv + B * p.Smax * p.Hkv * D, 0.0f);
  int64_t n = int64_t(p.nseq) * p.Hkv;
#pragma omp parallel
  {
    std::vector<float> q(D), o(D), dout(D), kbuf(D), vbuf(D);
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
      const SeqDesc& s = p.seqs[i / p.Hkv];
      int kh = int(i % p.Hkv);
      for (int64_t t = 0; t < s.T; t++) {
        for (int h = kh * G; h < (kh + 1) * G; h++) {
          int hs = p.Hsel == p.Hq ? h : h / G;
          const int32_t* row = p.idx + (p.qrow(s, t) * p.Hsel + hs) * p.K;
          float lse = p.lse[p.qrow(s, t) * p.Hq + h];
          to_f32(p.q.data, p.q.dtype, p.q.offset(s.batch, s.q_start + t, h), D, q.data());
          to_f32(p.o.data, p.o.dtype, p.o.offset(s.batch, s.q_start + t, h), D, o.data());
          to_f32(p.dout.data, p.dout.dtype, p.dout.offset(s.batch, s.q_start + t, h), D, dout.data());
          float di = dot1(dout.data(), o.data(), D);
          float* dq = p.dq + (p.qrow(s, t) * p.Hq + h) * D;
          for (int64_t c = 0; c < p.K; c++) {
            int32_t j = row[c];
            if (j < 0 || j >= s.S) continue;
            const float* k = row_f32(p.k, s.batch, s.k_start + j, kh, D, kbuf.data());
            const float* v = row_f32(p.v, s.batch, s.k_start + j, kh, D, vbuf.data());
            float pr = std::exp(p.scale * dot1(q.data(), k, D) - lse);  // 0 when lse = +inf
            float ds = p.scale * pr * (dot1(dout.data(), v, D) - di);
            int64_t kr = (p.krow(s, j) * p.Hkv + kh) * D;
            axpy(dq, ds, k, D);
            axpy(p.dk + kr, ds, q.data(), D);
            axpy(p.dv + kr, pr, dout.data(), D);
          }
        }
      }
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
