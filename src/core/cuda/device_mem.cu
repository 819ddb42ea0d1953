#include <cuda_runtime.h>

#include "core/cuda_check.cuh"
#include "core/device_mem.h"

namespace topk {

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  TOPK_CUDA(cudaMalloc(&p, bytes));
  TOPK_CUDA(cudaMemset(p, 0, bytes));
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
  TOPK_CUDA(cudaMemcpy(dst, src, bytes, k));
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
