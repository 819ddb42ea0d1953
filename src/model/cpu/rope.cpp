// Rotary embedding on the CPU, in place.
#include <cmath>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void rope(const TensorView& x, const TensorView& pos, const TensorView& inv_freq, bool inverse) {
  const int64_t N = x.shape[0], Hh = x.shape[1], D = x.shape[2], half = D / 2;
  float* px = x.ptr<float>();
  const int32_t* pp = pos.ptr<int32_t>();
  const float* f = inv_freq.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++) {
    for (int64_t i = 0; i < half; i++) {
      float a = float(pp[n]) * f[i], c = std::cos(a), s = inverse ? -std::sin(a) : std::sin(a);
      for (int64_t h = 0; h < Hh; h++) {
        float* r = px + (n * Hh + h) * D;
        float u = r[i], v = r[i + half];
        r[i] = u * c - v * s;
        r[i + half] = v * c + u * s;
      }
    }
  }
}

}  // namespace topk::ops::cpu
