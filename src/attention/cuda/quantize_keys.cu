// The indexer's key cache in FP8 on CUDA (indexer_quantize_keys, include/topk/approx.h): a warp
// per key row finds amax, then writes E4M3(x / scale) with the rule of core/fp8.h, the same
// fp32 operations as the CPU, so that both store the same bytes.
#include "attention/approx.h"
#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "core/fp8.h"

namespace topk::cuda {

namespace {

constexpr int kWarps = 8;

__global__ void __launch_bounds__(kWarps * 32) quantize_keys_kernel(const QuantizeKeysParams p,
                                                                     const DRows x) {
  const int64_t r = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= p.B * p.S) return;
  const int64_t b = r / p.S, s = r % p.S;
  const int64_t off = x.offset(b, s, 0);
  float amax = 0.f;  // fmaxf skips NaN, as std::max(amax, NaN) does on the CPU
  for (int d = lane; d < p.dI; d += 32) amax = fmaxf(amax, fabsf(load1(x.data, x.dt, off + d)));
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float scale = fp8_row_scale(amax);
  uint8_t* q = p.q8 + b * p.q8_sb + s * p.q8_st;
  for (int d = lane; d < p.dI; d += 32) q[d] = f32_to_fp8e4m3(load1(x.data, x.dt, off + d) / scale);
  if (lane == 0) p.scale[b * p.scale_sb + s * p.scale_st] = scale;
}

}  // namespace

void quantize_keys(const QuantizeKeysParams& p) {
  const int64_t rows = p.B * p.S;
  const int64_t blocks = (rows + kWarps - 1) / kWarps;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "indexer_quantize_keys: too many rows for one launch");
  quantize_keys_kernel<<<unsigned(blocks), kWarps * 32, 0, stream()>>>(p, drows(p.x));
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::cuda
