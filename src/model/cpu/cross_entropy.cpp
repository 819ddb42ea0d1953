// Masked cross-entropy over the vocabulary on the CPU (log-sum-exp in double).
#include <algorithm>
#include <cmath>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void cross_entropy(const TensorView& losses, const TensorView& dlogits, const TensorView& logits,
                   const TensorView& targets, const TensorView& weights, float grad_scale) {
  const int64_t N = rows_of(logits), V = cols_of(logits);
  const float* L = logits.ptr<float>();
  const int32_t* tg = targets.ptr<int32_t>();
  const float* wt = weights.ptr<float>();
  float* out = losses.ptr<float>();
  float* dl = dlogits.ndim ? dlogits.ptr<float>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float* r = L + n * V;
    float* d = dl ? dl + n * V : nullptr;
    const int t = tg[n];
    const float w = t < 0 ? 0.0f : wt[n];
    if (w <= 0) {
      out[n] = 0;
      if (d) std::fill(d, d + V, 0.0f);
      continue;
    }
    float mx = *std::max_element(r, r + V);
    double s = 0;
    for (int64_t i = 0; i < V; i++) s += std::exp(double(r[i] - mx));
    double lse = mx + std::log(s);
    out[n] = float(w * (lse - r[t]));
    if (d) {
      for (int64_t i = 0; i < V; i++) d[i] = grad_scale * w * float(std::exp(double(r[i]) - lse));
      d[t] -= grad_scale * w;
    }
  }
}

}  // namespace topk::ops::cpu
