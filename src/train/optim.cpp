#include "train/optim.h"

#include <algorithm>
#include <cmath>

#include "model/ops.h"
#include "model/views.h"
#include "topk/core.h"

namespace topk {

AdamW adamw_create(const Model& model) {
  TOPK_CHECK(!model.w.view().empty(), "AdamW: the model has no master weights (it was loaded "
             "for inference only)");
  AdamW o;
  o.m = Buffer(DType::f32, {model.numel}, model.device());
  o.v = Buffer(DType::f32, {model.numel}, model.device());
  return o;
}

void adamw_to(AdamW& opt, Device device) {
  for (Buffer* b : {&opt.m, &opt.v}) {
    if (b->view().device == device) continue;
    Buffer n(DType::f32, {b->numel()}, device);
    copy(n, *b);
    *b = std::move(n);
  }
}

void adamw_step(AdamW& opt, Model& model, const TensorView& grad, float lr, const AdamWOpts& o,
                size_t first, size_t last) {
  TOPK_CHECK(opt.m.numel() == model.numel && grad.numel() == model.numel,
             "adamw_step: optimizer state has %lld entries, gradient %lld, model %lld",
             (long long)opt.m.numel(), (long long)grad.numel(), (long long)model.numel);
  opt.t++;
  ops::AdamWStep s;
  s.lr = lr;
  s.beta1 = o.beta1;
  s.beta2 = o.beta2;
  s.eps = o.eps;
  s.t = opt.t;
  const bool low = model.compute() == DType::bf16;  // a bf16 copy exists (CUDA) to refresh
  // One call per run of adjacent parameters that share the decay setting.
  const auto& ps = model.params;
  const size_t end = std::min(last, ps.size());
  for (size_t i = first; i < end;) {
    size_t j = i + 1;
    while (j < end && ps[j].decay == ps[i].decay) j++;
    const int64_t off = int64_t(ps[i].offset);
    const int64_t n = int64_t(ps[j - 1].offset) + ps[j - 1].numel - off;
    s.weight_decay = ps[i].decay ? o.weight_decay : 0.0f;
    auto at = [&](const TensorView& t) { return view_at(t, off, {n}); };
    ops::adamw(at(model.w), at(grad), at(opt.m), at(opt.v), low ? at(model.wc) : TensorView{}, s);
    i = j;
  }
}

float lr_at(const Schedule& s, int64_t step) {
  if (step < s.warmup) return s.lr * float(step + 1) / float(s.warmup);
  int64_t span = s.total - 1 - s.warmup;
  if (span <= 0) return s.lr;
  double prog = std::min(1.0, double(step - s.warmup) / double(span));
  return s.min_lr + float(0.5 * (1.0 + std::cos(3.141592653589793 * prog))) * (s.lr - s.min_lr);
}

double clip_grad_norm(const TensorView& g, float max_norm) {
  double norm = std::sqrt(ops::sum_squares(g));
  if (max_norm > 0 && norm > max_norm) ops::scale(g, float(max_norm / (norm + 1e-12)));
  return norm;
}

}  // namespace topk
