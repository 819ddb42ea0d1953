// An f32 and its 32 bits, for code that the host and CUDA kernels both compile (the selection
// rule, the FP8 codec): one definition of the cast and of the host/device qualifier.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TOPK_HOST_DEVICE __host__ __device__
#else
#define TOPK_HOST_DEVICE
#endif

namespace topk {

TOPK_HOST_DEVICE inline uint32_t f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

TOPK_HOST_DEVICE inline float f32_of_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

}  // namespace topk
