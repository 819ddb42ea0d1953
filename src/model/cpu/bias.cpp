// Bias add and its gradient on the CPU. The gradient runs over columns, each summing its rows
// in order, so the result does not depend on the thread count.
#include "model/ops_impl.h"

namespace topk::ops::cpu {

void add_bias(const TensorView& y, const TensorView& b) {
  const int64_t N = rows_of(y), C = cols_of(y);
  float* py = y.ptr<float>();
  const float* pb = b.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) py[n * C + c] += pb[c];
}

void bias_grad(const TensorView& db, const TensorView& dy) {
  const int64_t N = rows_of(dy), C = cols_of(dy);
  float* pd = db.ptr<float>();
  const float* g = dy.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; c++) {
    float s = 0;
    for (int64_t n = 0; n < N; n++) s += g[n * C + c];
    pd[c] += s;
  }
}

}  // namespace topk::ops::cpu
