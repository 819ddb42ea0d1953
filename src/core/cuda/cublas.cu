#include "core/cuda/cublas.cuh"

namespace topk {

// One handle per device, created on first use, with a workspace so that cuBLAS may pick split-K
// kernels (32 MiB, the size NVIDIA recommends for Hopper). Never destroyed: it lives as long as
// the process, like the CUDA context. The default math mode stays: f32 operands compute in
// true f32 (no TF32).
cublasHandle_t cublas_handle() {
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
  cudaStream_t s = static_cast<cudaStream_t>(cuda_stream());
  if (!h.h) {
    TOPK_CUDA(cudaMalloc(&h.ws, bytes));
    TOPK_CUBLAS(cublasCreate(&h.h));
    TOPK_CUBLAS(cublasSetStream(h.h, s));
    TOPK_CUBLAS(cublasSetWorkspace(h.h, h.ws, bytes));
    h.stream = s;
  } else if (h.stream != s) {
    // topk::set_cuda_stream changed the stream: wait for work on the old one (it may still use
    // the workspace), and set the workspace again (cublasSetStream resets it to cuBLAS's pool).
    TOPK_CUDA(cudaDeviceSynchronize());
    TOPK_CUBLAS(cublasSetStream(h.h, s));
    TOPK_CUBLAS(cublasSetWorkspace(h.h, h.ws, bytes));
    h.stream = s;
  }
  return h.h;
}

}  // namespace topk
