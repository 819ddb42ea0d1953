#include <cuda_runtime.h>

#include "core/cuda_check.cuh"
#include "core/device_mem.h"
#include "topk/core.h"

namespace topk {

// Device memory work runs on topk::cuda_stream(), like the ops, so that it is ordered with them
// when a caller set a stream of its own.
static cudaStream_t stream() { return static_cast<cudaStream_t>(cuda_stream()); }

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  TOPK_CUDA(cudaMalloc(&p, bytes));
  TOPK_CUDA(cudaMemsetAsync(p, 0, bytes, stream()));
  return p;
}

void device_free(void* p) {
  if (p) cudaFree(p);  // never throws: called from destructors
}

void device_copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
  if (bytes == 0) return;
  cudaMemcpyKind k = kind == CopyKind::host_to_device   ? cudaMemcpyHostToDevice
                     : kind == CopyKind::device_to_host ? cudaMemcpyDeviceToHost
                                                        : cudaMemcpyDeviceToDevice;
  TOPK_CUDA(cudaMemcpyAsync(dst, src, bytes, k, stream()));
  // Like cudaMemcpy: a copy to or from the host is complete on return.
  if (k != cudaMemcpyDeviceToDevice) TOPK_CUDA(cudaStreamSynchronize(stream()));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void device_synchronize() { TOPK_CUDA(cudaDeviceSynchronize()); }

int64_t device_memory_used() {
  size_t free = 0, total = 0;
  TOPK_CUDA(cudaMemGetInfo(&free, &total));
  return int64_t(total - free);
}

}  // namespace topk
