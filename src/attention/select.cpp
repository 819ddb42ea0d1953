// Top-k select: validate -> Params -> backend.
#include <cmath>

#include "attention/plan.h"

namespace topk {

static void check_select_opts(const char* op, const SelectOpts& sel) {
  bool has_k = sel.k > 0, has_ratio = sel.ratio > 0;
  TOPK_CHECK(has_k != has_ratio,
             "%s: give exactly one budget, a count k > 0 or a ratio in (0, 1] (got k = %d, ratio = %g)",
             op, sel.k, sel.ratio);
  TOPK_CHECK(sel.k >= 0, "%s: k = %d is negative", op, sel.k);
  TOPK_CHECK(!has_ratio || (std::isfinite(sel.ratio) && sel.ratio <= 1.0),
             "%s: ratio = %g must be in (0, 1]", op, sel.ratio);
  TOPK_CHECK(sel.min_k >= 0 && sel.sink >= 0 && sel.window >= 0,
             "%s: min_k, sink and window must be >= 0 (got %d, %d, %d)", op, sel.min_k, sel.sink,
             sel.window);
}

int64_t select_capacity(const SelectOpts& sel, int64_t S) {
  check_select_opts("select_capacity", sel);
  int64_t w = select_budget(sel, S);
  int64_t cap = w > forced_count(sel, S) ? w : forced_count(sel, S);
  return cap < 1 ? 1 : cap;
}

void topk_select(const TensorView& scores, const Seqs& seqs, const AttnOpts& opts,
                 const SelectOpts& sel, const TensorView& indices) {
  const char* op = "topk_select";
  check_select_opts(op, sel);
  check_tensor(op, "scores", scores, {-1, -1, -1, -1}, false, true, scores.device);
  check_dtype(op, "scores", scores, DType::f32);
  int64_t B = scores.shape[0], T = scores.shape[1], Hq = scores.shape[2], S = scores.shape[3];
  check_tensor(op, "indices", indices, {B, T, -1, -1}, false, true, scores.device);
  check_dtype(op, "indices", indices, DType::i32);
  int64_t hsel = indices.shape[2];
  TOPK_CHECK(hsel > 0 && Hq % hsel == 0, "%s: indices have %lld heads, not a divisor of Hq = %lld",
             op, (long long)hsel, (long long)Hq);
  TOPK_CHECK(sel.share_group || hsel == Hq,
             "%s: per-head selection needs indices with Hq = %lld heads (got %lld); set share_group "
             "for one selection per KV group", op, (long long)Hq, (long long)hsel);
  // Scores carry no head dim of k: a stand-in k view of the right shape gives the plan its sizes.
  TensorView kshape = scores;
  kshape.ndim = 4;
  kshape.shape[1] = S;
  kshape.shape[2] = hsel;
  kshape.shape[3] = 1;
  kshape.stride[3] = 1;
  kshape.dtype = DType::f32;
  TensorView qshape = kshape;
  qshape.shape[1] = T;
  qshape.shape[2] = Hq;
  Plan plan = plan_attention(op, qshape, kshape, TensorView{}, seqs, opts);
  int64_t cap = select_capacity(sel, longest_keys(plan));
  TOPK_CHECK(indices.shape[3] >= cap, "%s: indices have %lld columns; this budget needs %lld", op,
             (long long)indices.shape[3], (long long)cap);
  SelectParams sp;
  sp.a = plan.p;
  sp.scores = scores.ptr<float>();
  sp.out = indices.ptr<int32_t>();
  sp.Hsel = int(hsel);
  sp.K = indices.shape[3];
  sp.sel = sel;
  switch (plan.backend) {
    case Backend::ref: ref::topk_select(sp); break;
    case Backend::cpu: cpu::topk_select(sp); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::topk_select(sp)); break;
    default: no_backend(op, plan.backend);
  }
}

}  // namespace topk
