// GEMM on CUDA through cuBLAS: bf16 operands, f32 accumulation (CUBLAS_COMPUTE_32F), f32 or bf16
// output. Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so cuBLAS gets B first
// and the row-major leading dims (row lengths) as its column-major ones.
// cuBLAS gives the same bits on every run for the same shapes on one GPU model, as long as each
// handle has its own stream and workspace (it does: one handle per device, on
// topk::cuda_stream(), stream 0 unless a caller set one).
#include <cublas_v2.h>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

#define TOPK_CUBLAS(call)                                                                      \
  do {                                                                                         \
    cublasStatus_t st_ = (call);                                                               \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                          \
      throw ::topk::Error(::topk::detail::format_error("cuBLAS error at %s:%d: %s (%s)",        \
                                                       __FILE__, __LINE__,                     \
                                                       cublasGetStatusString(st_), #call));    \
  } while (0)

// One handle per device, created on first use, with a workspace so that cuBLAS may pick split-K
// kernels (32 MiB, the size NVIDIA recommends for Hopper). Never destroyed: it lives as long as
// the process, like the CUDA context.
cublasHandle_t handle() {
  struct H {
    cublasHandle_t h = nullptr;
    void* ws = nullptr;
    cudaStream_t stream = nullptr;
  };
  static H hs[64];
  int dev = 0;
  TOPK_CUDA(cudaGetDevice(&dev));
  TOPK_ASSERT(dev >= 0 && dev < 64);
  H& h = hs[dev];
  const size_t bytes = size_t(32) << 20;
  if (!h.h) {
    TOPK_CUDA(cudaMalloc(&h.ws, bytes));
    TOPK_CUBLAS(cublasCreate(&h.h));
    TOPK_CUBLAS(cublasSetStream(h.h, stream()));
    TOPK_CUBLAS(cublasSetWorkspace(h.h, h.ws, bytes));
    h.stream = stream();
  } else if (h.stream != stream()) {
    // topk::set_cuda_stream changed the stream: wait for work on the old one (it may still use
    // the workspace), and set the workspace again (cublasSetStream resets it to cuBLAS's pool).
    TOPK_CUDA(cudaDeviceSynchronize());
    TOPK_CUBLAS(cublasSetStream(h.h, stream()));
    TOPK_CUBLAS(cublasSetWorkspace(h.h, h.ws, bytes));
    h.stream = stream();
  }
  return h.h;
}

}  // namespace

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
  TOPK_CUBLAS(cublasGemmEx(handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                           int(N), int(M), int(K), &alpha, B.data, CUDA_R_16BF, int(B.shape[1]),
                           A.data, CUDA_R_16BF, int(A.shape[1]), &beta, C.data, ct, int(N),
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace topk::ops::cuda
