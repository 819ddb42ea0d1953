// GEMM on CUDA through cuBLAS: bf16 operands, f32 accumulation, f32 or bf16 output.
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so cuBLAS gets B first.
// cuBLAS gives the same bits on every run for the same shapes on one GPU model.
#include <cublas_v2.h>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
  }
}

#define TOPK_CUBLAS(call)                                                                    \
  do {                                                                                       \
    cublasStatus_t st_ = (call);                                                             \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      throw ::topk::Error(::topk::detail::format_error("cuBLAS %s (%d) at %s:%d: %s",          \
                                                       status_name(st_), int(st_), __FILE__, \
                                                       __LINE__, #call));                    \
  } while (0)

// One handle per device, with a workspace so that cuBLAS may pick split-K kernels.
cublasHandle_t handle() {
  struct H {
    cublasHandle_t h = nullptr;
    void* ws = nullptr;
  };
  static H hs[64];
  int dev = 0;
  TOPK_CUDA(cudaGetDevice(&dev));
  TOPK_ASSERT(dev >= 0 && dev < 64);
  H& h = hs[dev];
  if (!h.h) {
    TOPK_CUBLAS(cublasCreate(&h.h));
    const size_t bytes = size_t(32) << 20;
    TOPK_CUDA(cudaMalloc(&h.ws, bytes));
    TOPK_CUBLAS(cublasSetWorkspace(h.h, h.ws, bytes));
  }
  TOPK_CUBLAS(cublasSetStream(h.h, stream()));  // per call: topk::cuda_stream() may change
  return h.h;
}

}  // namespace

void gemm(const TensorView& C, const TensorView& A, bool ta, const TensorView& B, bool tb,
          float alpha, float beta) {
  const int64_t M = C.shape[0], N = C.shape[1], K = ta ? A.shape[0] : A.shape[1];
  TOPK_CHECK(M < (int64_t(1) << 31) && N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
             "ops::gemm: %lld x %lld x %lld is too large for one cuBLAS call", (long long)M,
             (long long)N, (long long)K);
  if (K == 0) {  // C = beta * C
    if (beta == 0) {
      TOPK_CUDA(cudaMemsetAsync(C.data, 0, size_t(C.numel()) * dtype_size(C.dtype), stream()));
      return;
    }
    scale(C, beta);
    return;
  }
  const cudaDataType_t ct = C.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  TOPK_CUBLAS(cublasGemmEx(handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                           int(N), int(M), int(K), &alpha, B.data, CUDA_R_16BF, int(B.shape[1]),
                           A.data, CUDA_R_16BF, int(A.shape[1]), &beta, C.data, ct, int(N),
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace topk::ops::cuda
