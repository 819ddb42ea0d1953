// AdamW on CUDA: one elementwise map that updates the moments and the f32 master weights and,
// when asked, writes their bf16 copy (rounded to nearest even, as ops::convert does). The bias
// corrections are computed on the host, in f32 as the CPU op does.
#include <cmath>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

struct AdamWOp {  // w, g, m, v [P] f32; low [P] bf16 (low.p null: none)
  F w, g, m, v, low;
  float lr, b1, b2, eps, decay, bc1, bc2;
  template <int W>
  __device__ void run(int64_t i) const {
    float wi[W], gi[W], mi[W], vi[W];
    load<W>(w, i, wi);
    load<W>(g, i, gi);
    load<W>(m, i, mi);
    load<W>(v, i, vi);
#pragma unroll
    for (int k = 0; k < W; k++) {
      mi[k] = b1 * mi[k] + (1 - b1) * gi[k];
      vi[k] = b2 * vi[k] + (1 - b2) * gi[k] * gi[k];
      const float mh = mi[k] / bc1, vh = vi[k] / bc2;
      wi[k] -= lr * (mh / (sqrtf(vh) + eps) + decay * wi[k]);
    }
    store<W>(m, i, mi);
    store<W>(v, i, vi);
    store<W>(w, i, wi);
    if (low.p) store<W>(low, i, wi);
  }
};

}  // namespace

void adamw(const TensorView& w, const TensorView& grad, const TensorView& m, const TensorView& v,
           const TensorView& w_low, const AdamWStep& s) {
  const int64_t n = w.numel();
  const float bc1 = 1.0f - std::pow(s.beta1, float(s.t));
  const float bc2 = 1.0f - std::pow(s.beta2, float(s.t));
  const F low = w_low.ndim ? fview(w_low) : F{nullptr, true};
  launch_map(n, vec8(8, {w.data, grad.data, m.data, v.data, low.p}),
             AdamWOp{fview(w), fview(grad), fview(m), fview(v), low, s.lr, s.beta1, s.beta2, s.eps,
                     s.weight_decay, bc1, bc2});
}

}  // namespace topk::ops::cuda
