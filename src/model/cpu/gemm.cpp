// GEMM on the CPU through OpenBLAS (row-major, f32).
#include <cblas.h>

#include "model/ops_impl.h"

namespace topk::ops::cpu {

void gemm(const TensorView& C, const TensorView& A, bool ta, const TensorView& B, bool tb,
          float alpha, float beta) {
  const int M = int(C.shape[0]), N = int(C.shape[1]), K = int(ta ? A.shape[0] : A.shape[1]);
  if (K == 0) {  // BLAS leaves C untouched for K = 0; the math says C = beta * C
    float* c = C.ptr<float>();
    for (int64_t i = 0; i < C.numel(); i++) c[i] = beta == 0 ? 0.0f : beta * c[i];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A.ptr<float>(), int(A.shape[1]), B.ptr<float>(), int(B.shape[1]), beta,
              C.ptr<float>(), N);
}

}  // namespace topk::ops::cpu
