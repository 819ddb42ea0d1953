// Small helpers for the semantic tests: random host tensors and row access.
#pragma once
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "topk/attention.h"

namespace topk::test {

inline Buffer randn(std::initializer_list<int64_t> shape, uint64_t seed, float scale = 1.0f,
                    DType dtype = DType::f32) {
  Buffer b(dtype, shape);
  Rng rng(seed);
  for (int64_t i = 0; i < b.numel(); i++) store_f32(b.view().data, dtype, i, scale * rng.normal());
  return b;
}

inline float at(const Buffer& b, int64_t i) { return load_f32(b.view().data, b.view().dtype, i); }

inline std::vector<float> to_vec(const Buffer& b) {
  std::vector<float> v(b.numel());
  for (int64_t i = 0; i < b.numel(); i++) v[i] = at(b, i);
  return v;
}

// Max |a - b| / (|b| + 1) over all elements; infinities must sit at the same places.
inline double max_rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    if (std::isnan(a[i])) continue;
    m = std::max(m, std::abs(double(a[i]) - double(b[i])) / (std::abs(double(b[i])) + 1.0));
  }
  return m;
}

}  // namespace topk::test
