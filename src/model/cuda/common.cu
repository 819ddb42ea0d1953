// Device scratch of the model ops and the second pass of the column sums.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

__global__ void column_finish(int64_t C, int64_t chunks, const float* partial, float* out) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    float t = 0;
    for (int64_t i = 0; i < chunks; i++) t += partial[i * C + c];
    out[c] += t;
  }
}

void* scratch_bytes(int slot, size_t bytes) {
  struct Slot {
    void* p = nullptr;
    size_t cap = 0;
    int device = -1;
  };
  static Slot slots[kSlotCount];
  int dev = 0;
  TOPK_CUDA(cudaGetDevice(&dev));
  Slot& s = slots[slot];
  if (s.device != dev) s = Slot{nullptr, 0, dev};  // another device: its own buffers
  if (bytes > s.cap) {
    if (s.p) {
      TOPK_CUDA(cudaDeviceSynchronize());  // kernels in flight may still read the old one
      cudaFree(s.p);
    }
    s.p = nullptr;
    s.cap = 0;
    size_t cap = bytes < 4096 ? 4096 : bytes + bytes / 2;
    TOPK_CUDA(cudaMalloc(&s.p, cap));
    s.cap = cap;
  }
  return s.p;
}

}  // namespace topk::ops::cuda
