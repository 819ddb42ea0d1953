// AdamW on the CPU (decoupled weight decay; bias corrections from the update count).
#include <cmath>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void adamw(const TensorView& w, const TensorView& grad, const TensorView& m, const TensorView& v,
           const TensorView& w_low, const AdamWStep& s) {
  const int64_t n = w.numel();
  float *pw = w.ptr<float>(), *pm = m.ptr<float>(), *pv = v.ptr<float>();
  const float* g = grad.ptr<float>();
  const float bc1 = 1.0f - std::pow(s.beta1, float(s.t));
  const float bc2 = 1.0f - std::pow(s.beta2, float(s.t));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    pm[i] = s.beta1 * pm[i] + (1 - s.beta1) * g[i];
    pv[i] = s.beta2 * pv[i] + (1 - s.beta2) * g[i] * g[i];
    float mh = pm[i] / bc1, vh = pv[i] / bc2;
    pw[i] -= s.lr * (mh / (std::sqrt(vh) + s.eps) + s.weight_decay * pw[i]);
  }
}

}  // namespace topk::ops::cpu
