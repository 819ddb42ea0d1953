// Full attention: validate -> Params -> backend.
#include "attention/plan.h"

namespace topk {

static void set_outputs(const char* op, AttnParams& p, const TensorView& q, const TensorView& o,
                        const TensorView& lse) {
  check_tensor(op, "o", o, {q.shape[0], q.shape[1], q.shape[2], q.shape[3]}, true, false, q.device);
  check_tensor(op, "lse", lse, {q.shape[0], q.shape[1], q.shape[2]}, false, true, q.device);
  check_dtype(op, "lse", lse, DType::f32);
  p.o = rows_of(o);
  p.o_data = o.data;
  p.lse = lse.ptr<float>();
}

void attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                       const Seqs& seqs, const AttnOpts& opts, const TensorView& o,
                       const TensorView& lse) {
  const char* op = "attention_forward";
  Plan plan = plan_attention(op, q, k, v, seqs, opts);
  TOPK_CHECK(!v.empty(), "%s: v is missing", op);
  set_outputs(op, plan.p, q, o, lse);
  switch (plan.backend) {
    case Backend::ref: ref::attention_forward(plan.p); break;
    case Backend::cpu: cpu::attention_forward(plan.p); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::attention_forward(plan.p)); break;
    default: no_backend(op, plan.backend);
  }
}

// Shared by the full and sparse backward: the gradient tensors and the saved forward outputs.
void set_backward_tensors(const char* op, AttnParams& p, const TensorView& q, const TensorView& k,
                          const TensorView& o, const TensorView& lse, const TensorView& dout,
                          const TensorView& dq, const TensorView& dk, const TensorView& dv) {
  Device dev = q.device;
  int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], D = q.shape[3];
  int64_t S = k.shape[1], Hkv = k.shape[2];
  check_tensor(op, "o", o, {B, T, Hq, D}, true, false, dev);
  check_tensor(op, "lse", lse, {B, T, Hq}, false, true, dev);
  check_dtype(op, "lse", lse, DType::f32);
  check_tensor(op, "dout", dout, {B, T, Hq, D}, true, false, dev);
  check_tensor(op, "dq", dq, {B, T, Hq, D}, false, true, dev);
  check_tensor(op, "dk", dk, {B, S, Hkv, D}, false, true, dev);
  check_tensor(op, "dv", dv, {B, S, Hkv, D}, false, true, dev);
  check_dtype(op, "dq", dq, DType::f32);
  check_dtype(op, "dk", dk, DType::f32);
  check_dtype(op, "dv", dv, DType::f32);
  p.o = rows_of(o);
  p.lse = lse.ptr<float>();
  p.dout = rows_of(dout);
  p.dq = dq.ptr<float>();
  p.dk = dk.ptr<float>();
  p.dv = dv.ptr<float>();
}

void attention_backward(const TensorView& q, const TensorView& k, const TensorView& v,
                        const TensorView& o, const TensorView& lse, const TensorView& dout,
                        const Seqs& seqs, const AttnOpts& opts, const TensorView& dq,
                        const TensorView& dk, const TensorView& dv) {
  const char* op = "attention_backward";
  Plan plan = plan_attention(op, q, k, v, seqs, opts);
  TOPK_CHECK(!v.empty(), "%s: v is missing", op);
  set_backward_tensors(op, plan.p, q, k, o, lse, dout, dq, dk, dv);
  switch (plan.backend) {
    case Backend::ref: ref::attention_backward(plan.p); break;
    case Backend::cpu: cpu::attention_backward(plan.p); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::attention_backward(plan.p)); break;
    default: no_backend(op, plan.backend);
  }
}

}  // namespace topk
