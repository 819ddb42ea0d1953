// Token embedding lookup and its gradient on the CPU.
#include <cstring>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void embedding_forward(const TensorView& out, const TensorView& table, const TensorView& tokens) {
  const int64_t N = tokens.numel(), H = cols_of(table);
  const int32_t* t = tokens.ptr<int32_t>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    std::memcpy(out.ptr<float>() + n * H, table.ptr<float>() + int64_t(t[n]) * H,
                sizeof(float) * size_t(H));
}

// Threads own column blocks and add the rows in the order of n: the same sums on any thread count.
void embedding_backward(const TensorView& dtable, const TensorView& dout,
                        std::span<const int32_t> tokens) {
  const int64_t N = int64_t(tokens.size()), H = cols_of(dtable), block = 64;
  float* dt = dtable.ptr<float>();
  const float* g = dout.ptr<float>();
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < H; c0 += block) {
    const int64_t c1 = c0 + block < H ? c0 + block : H;
    for (int64_t n = 0; n < N; n++) {
      float* row = dt + int64_t(tokens[size_t(n)]) * H;
      for (int64_t c = c0; c < c1; c++) row[c] += g[n * H + c];
    }
  }
}

}  // namespace topk::ops::cpu
