#include "train/optim.h"

#include <cmath>

#include "topk/core.h"

namespace topk {

AdamW adamw_create(const Model& model) {
  AdamW o;
  o.m.assign(model.w.size(), 0.0f);
  o.v.assign(model.w.size(), 0.0f);
  return o;
}

void adamw_step(AdamW& opt, Model& model, const float* grad, float lr, const AdamWOpts& o) {
  TOPK_CHECK(opt.m.size() == model.w.size(), "adamw_step: optimizer state has %zu entries, model "
             "%zu", opt.m.size(), model.w.size());
  opt.t++;
  const float bc1 = 1.0f - std::pow(o.beta1, float(opt.t));
  const float bc2 = 1.0f - std::pow(o.beta2, float(opt.t));
  for (const auto& p : model.params) {
    float decay = p.decay ? o.weight_decay : 0.0f;
    for (size_t i = p.offset; i < p.offset + size_t(p.numel); i++) {
      float g = grad[i];
      opt.m[i] = o.beta1 * opt.m[i] + (1 - o.beta1) * g;
      opt.v[i] = o.beta2 * opt.v[i] + (1 - o.beta2) * g * g;
      float mh = opt.m[i] / bc1, vh = opt.v[i] / bc2;
      model.w[i] -= lr * (mh / (std::sqrt(vh) + o.eps) + decay * model.w[i]);
    }
  }
}

float lr_at(const Schedule& s, int64_t step) {
  if (step < s.warmup) return s.lr * float(step + 1) / float(s.warmup);
  int64_t span = s.total - 1 - s.warmup;
  if (span <= 0) return s.lr;
  double prog = std::min(1.0, double(step - s.warmup) / double(span));
  return s.min_lr + float(0.5 * (1.0 + std::cos(3.141592653589793 * prog))) * (s.lr - s.min_lr);
}

double clip_grad_norm(float* g, size_t n, float max_norm) {
  double ss = 0;
  for (size_t i = 0; i < n; i++) ss += double(g[i]) * g[i];
  double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    float s = float(max_norm / (norm + 1e-12));
    for (size_t i = 0; i < n; i++) g[i] *= s;
  }
  return norm;
}

}  // namespace topk
