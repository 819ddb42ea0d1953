#include "model/rope.h"

#include <cmath>

namespace topk {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  int D = c.head_dim;
  std::vector<float> f(size_t(D / 2));
  for (int i = 0; i < D / 2; i++) {
    float e = float(2 * i) / float(D);
    f[i] = 1.0f / std::pow(float(c.rope.theta), e);
  }
  if (c.rope.llama3) {
    const double pi = 3.141592653589793, old = c.rope.original_max_pos;
    double lo = c.rope.low_freq_factor, hi = c.rope.high_freq_factor, fac = c.rope.factor;
    double low_wl = old / lo, high_wl = old / hi;
    for (auto& v : f) {
      double wl = 2 * pi / double(v), s = v;
      if (wl > low_wl) {
        s = v / fac;
      } else if (wl >= high_wl) {  // between: smooth interpolation
        double sm = (old / wl - lo) / (hi - lo);
        s = (1 - sm) * v / fac + sm * v;
      }
      v = float(s);
    }
  }
  return f;
}

}  // namespace topk
