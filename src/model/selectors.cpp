#include "model/selectors.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/views.h"
#include "topk/approx.h"

namespace topk {

namespace {

struct Scratch {
  Buffer pscores, pidx, kidx, scores, cidx, idx;
};
Scratch& scratch_of() {
  thread_local Scratch s;
  return s;
}

int64_t longest(std::span<const int32_t> s) {
  int64_t m = 0;
  for (int32_t x : s) m = std::max<int64_t>(m, x);
  return m;
}

// The exact top-W of the keys listed in cand ([B, T, Hq, C]) by exact scores: scores of every
// visible key, the unlisted ones set to -inf, then the policy's budget. W never exceeds the
// listed keys (the policies check it), so no masked key is chosen.
TensorView rescore(const SelectOpts& sel, const TensorView& q, const TensorView& k,
                   const Seqs& seqs, const AttnOpts& opts, const TensorView& cand, Scratch& sc) {
  const int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], S = k.shape[1];
  TensorView ex = scratch(sc.scores, DType::f32, {B, T, Hq, S}, q.device);
  attention_scores(q, k, seqs, opts, ex);
  mask_scores(ex, cand);
  const int64_t K = select_capacity(sel, longest(seqs.seqlens_k));
  TensorView idx = scratch(sc.idx, DType::i32, {B, T, Hq, K}, q.device);
  topk_select(ex, seqs, opts, sel, idx);
  return idx;
}

}  // namespace

SelectOpts reference_budget(const AttnPolicy& pol) {
  SelectOpts s;
  s.min_k = pol.sel.min_k;
  if (pol.kind == PolicyKind::quest && !(pol.pages > 0 && pol.sel.k > 0)) {
    if (pol.pages > 0) s.k = pol.pages * pol.page;
    else if (pol.sel.k > 0) s.k = int((pol.sel.k + pol.page - 1) / pol.page) * pol.page;
    else s.ratio = pol.sel.ratio;
    return s;
  }
  s.k = pol.sel.k;
  s.ratio = pol.sel.ratio;
  return s;
}

TensorView quest_select(const AttnPolicy& pol, const TensorView& q, const TensorView& k,
                        std::span<const int32_t> seqlens_q, std::span<const int32_t> seqlens_k) {
  const int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], S = k.shape[1];
  const int page = pol.page;
  const Device dev = q.device;
  Scratch& sc = scratch_of();
  Seqs seqs;
  seqs.seqlens_k = seqlens_k;
  seqs.seqlens_q = seqlens_q;
  AttnOpts causal;
  causal.causal = true;
  // Page bounds, then the top pages of each query head among the sequence's pages.
  const int64_t P = std::max<int64_t>(1, (S + page - 1) / page);
  TensorView ps = scratch(sc.pscores, DType::f32, {B, T, Hq, P}, dev);
  quest_scores(q, k, seqs, causal, page, ps);
  SelectOpts psel;
  if (pol.pages > 0) psel.k = pol.pages;
  else if (pol.sel.k > 0) psel.k = (pol.sel.k + page - 1) / page;
  else psel.ratio = pol.sel.ratio;
  psel.min_k = (pol.sel.min_k + page - 1) / page;
  std::vector<int32_t> npages(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; b++) npages[size_t(b)] = int32_t((seqlens_k[size_t(b)] + page - 1) / page);
  Seqs pseqs;
  pseqs.seqlens_k = npages;
  pseqs.seqlens_q = seqlens_q;
  const int64_t Kp = select_capacity(psel, P);
  TensorView pidx = scratch(sc.pidx, DType::i32, {B, T, Hq, Kp}, dev);
  topk_select(ps, pseqs, AttnOpts{}, psel, pidx);
  // The pages' visible keys, on the host (a few ints per row).
  std::vector<int32_t> ph(static_cast<size_t>(pidx.numel()));
  copy(make_view(ph.data(), DType::i32, {pidx.numel()}), reshape(pidx, {pidx.numel()}));
  const int64_t Kk = Kp * page;
  std::vector<int32_t> kh(static_cast<size_t>(B * T * Hq * Kk), -1);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < seqlens_q[size_t(b)]; t++) {
      const int64_t n = seqlens_k[size_t(b)] - seqlens_q[size_t(b)] + t + 1;
      for (int64_t h = 0; h < Hq; h++) {
        const int32_t* row = ph.data() + ((b * T + t) * Hq + h) * Kp;
        int32_t* out = kh.data() + ((b * T + t) * Hq + h) * Kk;
        int64_t c = 0;
        for (int64_t i = 0; i < Kp; i++)
          if (row[i] >= 0)
            for (int64_t j = int64_t(row[i]) * page; j < std::min<int64_t>(n, (row[i] + 1) * int64_t(page)); j++)
              out[c++] = int32_t(j);
      }
    }
  TensorView kidx = scratch(sc.kidx, DType::i32, {B, T, Hq, Kk}, dev);
  copy(reshape(kidx, {kidx.numel()}), make_view(kh.data(), DType::i32, {kidx.numel()}));
  if (!(pol.pages > 0 && pol.sel.k > 0)) return kidx;
  SelectOpts sel;
  sel.k = pol.sel.k;
  sel.min_k = pol.sel.min_k;
  return rescore(sel, q, k, seqs, causal, kidx, sc);
}

TensorView qkeys_select(const AttnPolicy& pol, const TensorView& q, const TensorView& k,
                        std::span<const int32_t> seqlens_q, std::span<const int32_t> seqlens_k) {
  const int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], S = k.shape[1];
  const Device dev = q.device;
  Scratch& sc = scratch_of();
  Seqs seqs;
  seqs.seqlens_k = seqlens_k;
  seqs.seqlens_q = seqlens_q;
  AttnOpts causal;
  causal.causal = true;
  TensorView qs = scratch(sc.pscores, DType::f32, {B, T, Hq, S}, dev);
  quantized_scores(q, k, seqs, causal, pol.bits, qs);
  // Candidates: rescore times the budget (never fewer than the budget).
  SelectOpts cand;
  if (pol.sel.k > 0) cand.k = int(std::min<double>(std::ceil(pol.sel.k * pol.rescore), 2147483647.0));
  else cand.ratio = std::min(1.0, pol.sel.ratio * pol.rescore);
  cand.min_k = int(std::min<double>(std::ceil(pol.sel.min_k * pol.rescore), 2147483647.0));
  const int64_t Kc = select_capacity(cand, longest(seqlens_k));
  TensorView cidx = scratch(sc.cidx, DType::i32, {B, T, Hq, Kc}, dev);
  topk_select(qs, seqs, causal, cand, cidx);
  if (pol.rescore <= 1) return cidx;
  SelectOpts sel;
  sel.k = pol.sel.k;
  sel.ratio = pol.sel.ratio;
  sel.min_k = pol.sel.min_k;
  return rescore(sel, q, k, seqs, causal, cidx, sc);
}

}  // namespace topk
