// Exact top-k attention: validate -> Params -> backend. The reference composes the three ops
// (scores, select, sparse attention) literally; the fast paths fuse them.
#include "attention/plan.h"

namespace topk {

void set_indices(const char* op, AttnParams& p, const TensorView& q, const TensorView& indices);

void topk_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                            const Seqs& seqs, const AttnOpts& opts, const SelectOpts& sel,
                            const TensorView& o, const TensorView& lse,
                            const TensorView& indices) {
  const char* op = "topk_attention_forward";
  Plan plan = plan_attention(op, q, k, v, seqs, opts);
  TOPK_CHECK(!v.empty(), "%s: v is missing", op);
  AttnParams& p = plan.p;
  set_indices(op, p, q, indices);
  TOPK_CHECK(sel.share_group ? p.Hsel == p.Hkv : p.Hsel == p.Hq,
             "%s: indices have %d heads; %s selection needs %d", op, p.Hsel,
             sel.share_group ? "group-shared" : "per-head", sel.share_group ? p.Hkv : p.Hq);
  int64_t cap = select_capacity(sel, longest_keys(plan));
  TOPK_CHECK(p.K >= cap, "%s: indices have %lld columns; this budget needs %lld", op,
             (long long)p.K, (long long)cap);
  check_tensor(op, "o", o, {q.shape[0], q.shape[1], q.shape[2], q.shape[3]}, true, false, q.device);
  check_tensor(op, "lse", lse, {q.shape[0], q.shape[1], q.shape[2]}, false, true, q.device);
  check_dtype(op, "lse", lse, DType::f32);
  p.o = rows_of(o);
  p.o_data = o.data;
  p.lse = lse.ptr<float>();
  int32_t* idx = indices.ptr<int32_t>();

  switch (plan.backend) {
    case Backend::ref: {
      Buffer scores(DType::f32, {q.shape[0], q.shape[1], q.shape[2], k.shape[1]});
      ref::attention_scores(p, scores.ptr<float>());
      SelectParams sp;
      sp.a = p;
      sp.scores = scores.ptr<float>();
      sp.out = idx;
      sp.Hsel = p.Hsel;
      sp.K = p.K;
      sp.sel = sel;
      ref::topk_select(sp);
      ref::sparse_forward(p);
      break;
    }
    case Backend::cpu: cpu::topk_attention_forward(p, sel, idx, p.K); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::topk_attention_forward(p, sel, idx, p.K)); break;
    default: no_backend(op, plan.backend);
  }
}

}  // namespace topk
