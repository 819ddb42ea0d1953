// Elementwise ops, reductions and row moves on the CPU.
#include <cmath>
#include <cstring>
#include <vector>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void add(const TensorView& y, const TensorView& a, const TensorView& b) {
  const int64_t n = y.numel();
  float* py = y.ptr<float>();
  const float *pa = a.ptr<float>(), *pb = b.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) py[i] = pa[i] + pb[i];
}

void scale(const TensorView& x, float s) {
  const int64_t n = x.numel();
  float* p = x.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) p[i] *= s;
}

void convert(const TensorView& dst, const TensorView& src) {
  if (dst.data != src.data) std::memcpy(dst.data, src.data, size_t(src.numel()) * dtype_size(src.dtype));
}

void zero(const TensorView& x) { std::memset(x.data, 0, size_t(x.numel()) * dtype_size(x.dtype)); }

// Fixed chunks summed in double, then the chunk sums in order: independent of the thread count.
double sum_squares(const TensorView& x) {
  const int64_t n = x.numel(), chunk = 1 << 14, nc = (n + chunk - 1) / chunk;
  const float* p = x.ptr<float>();
  std::vector<double> part(size_t(nc), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    double s = 0;
    for (int64_t i = c * chunk; i < n && i < (c + 1) * chunk; i++) s += double(p[i]) * p[i];
    part[size_t(c)] = s;
  }
  double s = 0;
  for (double v : part) s += v;
  return s;
}

bool all_finite(const TensorView& x) {
  const int64_t n = x.numel();
  const float* p = x.ptr<float>();
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
  for (int64_t i = 0; i < n; i++) bad |= !std::isfinite(p[i]);
  return !bad;
}

void scatter_rows(const TensorView& dst, const TensorView& index, const TensorView& src) {
  const size_t row = size_t(cols_of(src)) * dtype_size(src.dtype);
  const int32_t* ix = index.ptr<int32_t>();
  for (int64_t n = 0; n < rows_of(src); n++)
    if (ix[n] >= 0)
      std::memcpy(static_cast<char*>(dst.data) + size_t(ix[n]) * row,
                  static_cast<const char*>(src.data) + size_t(n) * row, row);
}

void gather_rows(const TensorView& dst, const TensorView& src, const TensorView& index) {
  const size_t row = size_t(cols_of(src)) * dtype_size(src.dtype);
  const int32_t* ix = index.ptr<int32_t>();
  for (int64_t n = 0; n < rows_of(dst); n++)
    std::memcpy(static_cast<char*>(dst.data) + size_t(n) * row,
                static_cast<const char*>(src.data) + size_t(ix[n]) * row, row);
}

}  // namespace topk::ops::cpu
