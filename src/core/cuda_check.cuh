// CUDA error checks that turn failures into topk::Error (file:line and the CUDA message).
#pragma once
#include <cuda_runtime.h>

#include "topk/core.h"

#define TOPK_CUDA(call)                                                                \
  do {                                                                                 \
    cudaError_t err_ = (call);                                                         \
    if (err_ != cudaSuccess)                                                           \
      throw ::topk::Error(::topk::detail::format_error("CUDA error at %s:%d: %s (%s)", \
                                                       __FILE__, __LINE__,             \
                                                       cudaGetErrorString(err_), #call)); \
  } while (0)

// After a launch: catches bad configurations at once.
#define TOPK_CUDA_LAUNCH() TOPK_CUDA(cudaGetLastError())
