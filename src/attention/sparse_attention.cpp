// Sparse attention over given indices: validate -> Params -> backend.
#include "attention/plan.h"

namespace topk {

void set_backward_tensors(const char* op, AttnParams& p, const TensorView& q, const TensorView& k,
                          const TensorView& o, const TensorView& lse, const TensorView& dout,
                          const TensorView& dq, const TensorView& dk, const TensorView& dv);

// indices [B, T, Hsel, K] i32 with Hsel = Hq or Hkv.
void set_indices(const char* op, AttnParams& p, const TensorView& q, const TensorView& indices) {
  check_tensor(op, "indices", indices, {q.shape[0], q.shape[1], -1, -1}, false, true, q.device);
  check_dtype(op, "indices", indices, DType::i32);
  int64_t hsel = indices.shape[2];
  TOPK_CHECK(hsel == p.Hq || hsel == p.Hkv,
             "%s: indices have %lld heads; need Hq = %d (per head) or Hkv = %d (per group)", op,
             (long long)hsel, p.Hq, p.Hkv);
  p.idx = indices.ptr<int32_t>();
  p.Hsel = int(hsel);
  p.K = indices.shape[3];
}

void sparse_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                              const TensorView& indices, const Seqs& seqs, const AttnOpts& opts,
                              const TensorView& o, const TensorView& lse) {
  const char* op = "sparse_attention_forward";
  Plan plan = plan_attention(op, q, k, v, seqs, opts);
  TOPK_CHECK(!v.empty(), "%s: v is missing", op);
  set_indices(op, plan.p, q, indices);
  check_tensor(op, "o", o, {q.shape[0], q.shape[1], q.shape[2], q.shape[3]}, true, false, q.device);
  check_tensor(op, "lse", lse, {q.shape[0], q.shape[1], q.shape[2]}, false, true, q.device);
  check_dtype(op, "lse", lse, DType::f32);
  plan.p.o = rows_of(o);
  plan.p.o_data = o.data;
  plan.p.lse = lse.ptr<float>();
  switch (plan.backend) {
    case Backend::ref: ref::sparse_forward(plan.p); break;
    case Backend::cpu: cpu::sparse_forward(plan.p); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::sparse_forward(plan.p)); break;
    default: no_backend(op, plan.backend);
  }
}

void sparse_attention_backward(const TensorView& q, const TensorView& k, const TensorView& v,
                               const TensorView& indices, const TensorView& o,
                               const TensorView& lse, const TensorView& dout, const Seqs& seqs,
                               const AttnOpts& opts, const TensorView& dq, const TensorView& dk,
                               const TensorView& dv) {
  const char* op = "sparse_attention_backward";
  Plan plan = plan_attention(op, q, k, v, seqs, opts);
  TOPK_CHECK(!v.empty(), "%s: v is missing", op);
  set_indices(op, plan.p, q, indices);
  set_backward_tensors(op, plan.p, q, k, o, lse, dout, dq, dk, dv);
  switch (plan.backend) {
    case Backend::ref: ref::sparse_backward(plan.p); break;
    case Backend::cpu: cpu::sparse_backward(plan.p); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::sparse_backward(plan.p)); break;
    default: no_backend(op, plan.backend);
  }
}

}  // namespace topk
