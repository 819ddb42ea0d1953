// GEMM on CUDA through cuBLAS: bf16 operands, f32 accumulation (CUBLAS_COMPUTE_32F), f32 or bf16
// output; or f32 operands and output (the f32-compute engine). Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so cuBLAS gets B first
// and the row-major leading dims (row lengths) as its column-major ones.
// The handle (core/cuda/cublas.cuh) is shared with top-k attention's score products.
#include "core/cuda/cublas.cuh"
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

void gemm(const TensorView& C, const TensorView& A, bool ta, const TensorView& B, bool tb,
          float alpha, float beta) {  // C [M, N]; A [M, K] or [K, M]; B [K, N] or [N, K]
  const int64_t M = C.shape[0], N = C.shape[1], K = ta ? A.shape[0] : A.shape[1];
  TOPK_CHECK(M < (int64_t(1) << 31) && N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
             "ops::gemm: %lld x %lld x %lld is too large for one cuBLAS call", (long long)M,
             (long long)N, (long long)K);
  if (M == 0 || N == 0) return;
  if (K == 0) {  // cuBLAS would leave C alone; the math says C = beta * C
    const size_t bytes = size_t(C.numel()) * dtype_size(C.dtype);
    if (beta == 0) TOPK_CUDA(cudaMemsetAsync(C.data, 0, bytes, stream()));
    else scale(C, beta);  // f32 C: a bf16 C has beta = 0
    return;
  }
  const cudaDataType_t ct = C.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  // f32 operands compute in true f32: the handle keeps the default math mode, so no TF32.
  const cudaDataType_t at = A.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  TOPK_CUBLAS(cublasGemmEx(cublas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                           int(N), int(M), int(K), &alpha, B.data, at, int(B.shape[1]),
                           A.data, at, int(A.shape[1]), &beta, C.data, ct, int(N),
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace topk::ops::cuda
