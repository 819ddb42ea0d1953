// CPU full attention backward, flash style: P is recomputed from lse block by block,
//   dS = P * (dout.v - dout.o),  dq += scale dS k,  dk += scale dS^T q,  dv += P^T dout.
// Work item = (sequence, KV head): it alone writes its dk/dv rows and the dq rows of its G
// query heads, so there are no races and the summation order is fixed (deterministic).
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {
namespace {
constexpr int kBk = 64;    // keys per block
constexpr int kRows = 64;  // query rows (queries x G heads) per tile

// Rows (t, g) of heads kh*G + g of a [B, T, Hq, D] tensor for t < T, as fp32 [T * G, D].
TOPK_TARGET void load_group(const AttnParams& p, const Rows& r, const SeqDesc& s, int kh,
                            float* out) {
  int G = p.group();
  for (int64_t t = 0; t < s.T; t++)
    for (int g = 0; g < G; g++)
      to_f32(r.data, r.dtype, r.offset(s.batch, s.q_start + t, kh * G + g), p.D,
             out + (t * G + g) * p.D);
}

TOPK_TARGET void backward_item(const AttnParams& p, const SeqDesc& s, int kh) {
  int G = p.group(), D = p.D;
  int64_t M = s.T * G;
  std::vector<float> Q(M * D), dO(M * D), O(M * D), Di(M), L(M);
  load_group(p, p.q, s, kh, Q.data());
  load_group(p, p.dout, s, kh, dO.data());
  load_group(p, p.o, s, kh, O.data());
  for (int64_t r = 0; r < M; r++) {
    Di[r] = dot1(&dO[r * D], &O[r * D], D);
    L[r] = p.lse[p.qrow(s, r / G) * p.Hq + kh * G + r % G];
  }
  std::vector<float> S(size_t(kRows) * kBk), dP(S.size()), T1(S.size()), T2(S.size());
  std::vector<float> kbuf(size_t(kBk) * D), vbuf(size_t(kBk) * D);
  const float* kptr[kBk];
  const float* vptr[kBk];
  std::vector<const float*> qptr(kRows), dptr(kRows);
  int nt_tile = std::max(1, kRows / G);
  int64_t nkeys = p.visible(s, s.T - 1);
  int64_t ldk = int64_t(p.Hkv) * D;
  for (int64_t j0 = 0; j0 < nkeys; j0 += kBk) {
    int nk = int(std::min<int64_t>(kBk, nkeys - j0));
    for (int j = 0; j < nk; j++) {
      kptr[j] = row_f32(p.k, s.batch, s.k_start + j0 + j, kh, D, &kbuf[size_t(j) * D]);
      vptr[j] = row_f32(p.v, s.batch, s.k_start + j0 + j, kh, D, &vbuf[size_t(j) * D]);
    }
    float* dk = p.dk + (p.krow(s, j0) * p.Hkv + kh) * D;
    float* dv = p.dv + (p.krow(s, j0) * p.Hkv + kh) * D;
    // Queries that see no key of this block (causal) are skipped.
    int64_t tfirst = p.causal ? std::clamp<int64_t>(j0 - s.q_pos, 0, s.T) : 0;
    for (int64_t t0 = tfirst; t0 < s.T; t0 += nt_tile) {
      int nt = int(std::min<int64_t>(nt_tile, s.T - t0));
      int mt = nt * G;
      const float* q = &Q[t0 * G * D];
      const float* d = &dO[t0 * G * D];
      for (int j = 0; j < nk; j++) {
        dot_nrows(q, D, mt, kptr[j], D, p.scale, S.data() + j, kBk);
        dot_nrows(d, D, mt, vptr[j], D, 1.0f, dP.data() + j, kBk);
      }
      for (int r = 0; r < mt; r++) {
        int64_t gr = t0 * G + r;
        float* sr = &S[size_t(r) * kBk];
        int nv = int(std::clamp<int64_t>(p.visible(s, t0 + r / G) - j0, 0, nk));
        exp_sub_sum(sr, nv, L[gr]);  // sr = P (0 where lse = +inf)
        std::fill(sr + nv, sr + nk, 0.0f);
        for (int j = 0; j < nk; j++) {
          float ds = sr[j] * (dP[size_t(r) * kBk + j] - Di[gr]);
          dP[size_t(r) * kBk + j] = p.scale * ds;       // scaled dS, rows
          T1[size_t(j) * kRows + r] = p.scale * ds;     // scaled dS, transposed
          T2[size_t(j) * kRows + r] = sr[j];            // P, transposed
        }
        qptr[r] = q + int64_t(r) * D;
        dptr[r] = d + int64_t(r) * D;
      }
      for (int t = 0; t < nt; t++)
        pv_nrows(p.dq + (p.qrow(s, t0 + t) * p.Hq + kh * G) * D, D, G,
                 dP.data() + size_t(t) * G * kBk, kBk, kptr, nk, D);
      pv_nrows(dk, ldk, nk, T1.data(), kRows, qptr.data(), mt, D);
      pv_nrows(dv, ldk, nk, T2.data(), kRows, dptr.data(), mt, D);
    }
  }
}

}  // namespace

TOPK_TARGET void attention_backward(const AttnParams& p) {
  int64_t B = batches(p);
  zero_dq_rows(p);
  std::fill(p.dk, p.dk + B * p.Smax * p.Hkv * p.D, 0.0f);
  std::fill(p.dv, p.dv + B * p.Smax * p.Hkv * p.D, 0.0f);
  int64_t n = int64_t(p.nseq) * p.Hkv;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; i++) backward_item(p, p.seqs[i / p.Hkv], int(i % p.Hkv));
}

}  // namespace topk::cpu::TOPK_ISA
