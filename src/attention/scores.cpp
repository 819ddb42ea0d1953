// Exact scores: validate -> Params -> backend.
#include "attention/plan.h"

namespace topk {

void attention_scores(const TensorView& q, const TensorView& k, const Seqs& seqs,
                      const AttnOpts& opts, const TensorView& scores) {
  const char* op = "attention_scores";
  Plan plan = plan_attention(op, q, k, TensorView{}, seqs, opts);
  check_tensor(op, "scores", scores, {q.shape[0], q.shape[1], q.shape[2], k.shape[1]}, false,
               true, q.device);
  check_dtype(op, "scores", scores, DType::f32);
  float* out = scores.ptr<float>();
  switch (plan.backend) {
    case Backend::ref: ref::attention_scores(plan.p, out); break;
    case Backend::cpu: cpu::attention_scores(plan.p, out); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::attention_scores(plan.p, out)); break;
    default: no_backend(op, plan.backend);
  }
}

}  // namespace topk
