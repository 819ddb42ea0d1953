// The process's cuBLAS handle (for .cu files only: it names cuBLAS types). The model's GEMMs
// and top-k attention's score products share it, and so its workspace and stream.
#pragma once
#include <cublas_v2.h>

#include "core/cuda_check.cuh"

#define TOPK_CUBLAS(call)                                                                      \
  do {                                                                                         \
    cublasStatus_t st_ = (call);                                                               \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                          \
      throw ::topk::Error(::topk::detail::format_error("cuBLAS error at %s:%d: %s (%s)",        \
                                                       __FILE__, __LINE__,                     \
                                                       cublasGetStatusString(st_), #call));    \
  } while (0)

namespace topk {

// The handle of the current device, bound to topk::cuda_stream() (rebound when a caller set
// another stream). cuBLAS gives the same bits on every run for the same shapes on one GPU
// model, as long as each handle has its own stream and workspace: it does.
cublasHandle_t cublas_handle();

}  // namespace topk
