// SwiGLU forward and backward on the CPU: gu holds [gate | up] per row.
#include <cmath>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void swiglu_forward(const TensorView& act, const TensorView& gu) {
  const int64_t N = rows_of(act), I = cols_of(act);
  const float* p = gu.ptr<float>();
  float* a = act.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < I; i++) {
      float g = p[n * 2 * I + i], u = p[n * 2 * I + I + i];
      a[n * I + i] = g / (1.0f + std::exp(-g)) * u;
    }
}

void swiglu_backward(const TensorView& dgu, const TensorView& dact, const TensorView& gu) {
  const int64_t N = rows_of(dact), I = cols_of(dact);
  const float* p = gu.ptr<float>();
  const float* da = dact.ptr<float>();
  float* d = dgu.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < I; i++) {
      float g = p[n * 2 * I + i], u = p[n * 2 * I + I + i], s = 1.0f / (1.0f + std::exp(-g));
      float x = da[n * I + i];
      d[n * 2 * I + i] = x * u * s * (1.0f + g * (1.0f - s));
      d[n * 2 * I + I + i] = x * g * s;
    }
}

}  // namespace topk::ops::cpu
