// Quest page bounds, quantised-key scores and score masking: validate -> Params -> backend.
#include "attention/approx.h"
#include "attention/plan.h"
#include "topk/approx.h"

namespace topk {

void quest_scores(const TensorView& q, const TensorView& k, const Seqs& seqs,
                  const AttnOpts& opts, int page, const TensorView& scores) {
  const char* op = "quest_scores";
  Plan plan = plan_attention(op, q, k, TensorView{}, seqs, opts);
  TOPK_CHECK(page >= 1, "%s: page = %d must be >= 1", op, page);
  const int64_t pages = (k.shape[1] + page - 1) / page;
  check_tensor(op, "scores", scores, {q.shape[0], q.shape[1], q.shape[2], -1}, false, true,
               q.device);
  check_dtype(op, "scores", scores, DType::f32);
  TOPK_CHECK(scores.shape[3] >= pages, "%s: scores have %lld columns; %lld keys in pages of %d "
             "need %lld", op, (long long)scores.shape[3], (long long)k.shape[1], page,
             (long long)pages);
  QuestParams qp;
  qp.a = plan.p;
  qp.page = page;
  qp.P = scores.shape[3];
  qp.scores = scores.ptr<float>();
  switch (plan.backend) {
    case Backend::ref: ref::quest_scores(qp); break;
    case Backend::cpu: cpu::quest_scores(qp); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::quest_scores(qp)); break;
    default: no_backend(op, plan.backend);
  }
}

void quantized_scores(const TensorView& q, const TensorView& k, const Seqs& seqs,
                      const AttnOpts& opts, int bits, const TensorView& scores) {
  const char* op = "quantized_scores";
  Plan plan = plan_attention(op, q, k, TensorView{}, seqs, opts);
  TOPK_CHECK(bits == 8 || bits == 4, "%s: bits = %d; 8 (int8) and 4 (int4) are supported", op,
             bits);
  check_tensor(op, "scores", scores, {q.shape[0], q.shape[1], q.shape[2], k.shape[1]}, false,
               true, q.device);
  check_dtype(op, "scores", scores, DType::f32);
  QuantParams qp;
  qp.a = plan.p;
  qp.bits = bits;
  qp.scores = scores.ptr<float>();
  switch (plan.backend) {
    case Backend::ref: ref::quantized_scores(qp); break;
    case Backend::cpu: cpu::quantized_scores(qp); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::quantized_scores(qp)); break;
    default: no_backend(op, plan.backend);
  }
}

void mask_scores(const TensorView& scores, const TensorView& indices) {
  const char* op = "mask_scores";
  check_tensor(op, "scores", scores, {-1, -1, -1, -1}, false, true, scores.device);
  check_dtype(op, "scores", scores, DType::f32);
  const int64_t B = scores.shape[0], T = scores.shape[1], H = scores.shape[2];
  check_tensor(op, "indices", indices, {B, T, -1, -1}, false, true, scores.device);
  check_dtype(op, "indices", indices, DType::i32);
  const int64_t hsel = indices.shape[2];
  TOPK_CHECK(hsel > 0 && H % hsel == 0, "%s: indices have %lld heads, not a divisor of the %lld "
             "score heads", op, (long long)hsel, (long long)H);
  MaskParams mp;
  mp.R = B * T;
  mp.H = int(H);
  mp.S = scores.shape[3];
  mp.Hsel = int(hsel);
  mp.C = indices.shape[3];
  mp.scores = scores.ptr<float>();
  mp.idx = indices.ptr<int32_t>();
  if (mp.R == 0 || mp.S == 0) return;
  if (scores.device == Device::cuda) {
    TOPK_CUDA_DISPATCH(op, cuda::mask_scores(mp));
  } else {
    cpu::mask_scores(mp);
  }
}

}  // namespace topk
