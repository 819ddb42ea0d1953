// FP8 E4M3 (the OCP "E4M3FN" format of Hopper's tensor cores: 1 sign bit, 4 exponent bits of
// bias 7, 3 mantissa bits, no infinities, S.1111.111 the only NaN, 448 the largest magnitude)
// and the per-row quantisation of the Lightning Indexer's key cache. One definition for the
// host and for CUDA kernels, so that every backend stores the same bytes.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/bitcast.h"

namespace topk {

constexpr float kFp8Max = 448.0f;

// Exact: every E4M3 value is an f32.
TOPK_HOST_DEVICE inline float fp8e4m3_to_f32(uint8_t x) {
  const uint32_t sign = uint32_t(x & 0x80u) << 24, e = (x >> 3) & 0xfu, m = x & 7u;
  if (e == 15 && m == 7) return f32_of_bits(sign | 0x7fc00000u);
  const float mag = e == 0 ? float(m) * 0.001953125f  // subnormal: m * 2^-9
                           : f32_of_bits(((e + 120u) << 23) | (m << 20));
  return sign ? -mag : mag;
}

// Round to nearest, ties to even; magnitudes past 448 (infinities included) saturate to 448;
// NaN becomes 0x7f: the rounding PTX's cvt.rn.satfinite.e4m3x2.f32 specifies, in integer
// operations, so that host and device agree without relying on either's conversion unit.
TOPK_HOST_DEVICE inline uint8_t f32_to_fp8e4m3(float f) {
  const uint32_t u = f32_bits(f), a = u & 0x7fffffffu;
  const uint8_t sign = uint8_t((u >> 24) & 0x80u);
  if (a > 0x7f800000u) return 0x7fu;  // NaN of either sign: one code, whatever the division gave
  if (a >= 0x43e00000u) return uint8_t(sign | 0x7eu);  // >= 448
  if (a < 0x3c800000u) {                                // below 2^-6: multiples of 2^-9
#if defined(__CUDA_ARCH__)
    const float r = rintf(f32_of_bits(a) * 512.0f);
#else
    const float r = std::rint(f32_of_bits(a) * 512.0f);
#endif
    return uint8_t(sign | uint8_t(r));  // 8 is the least normal, 0x08
  }
  uint32_t r = a - (120u << 23);               // rebias the exponent to 7
  r = (r + 0x7ffffu + ((r >> 20) & 1u)) >> 20;  // 23 -> 3 mantissa bits, ties to even
  return uint8_t(sign | r);
}

// The quantisation of one key row x[0, n) (the indexer cache, docs/semantics.md): amax =
// max |x_d|, scale = amax / 448 (1 for a zero row), q_d = E4M3(x_d / scale), all in fp32, so
// that the row's largest element lands on +-448. The key it stands for is scale * q.
TOPK_HOST_DEVICE inline float fp8_row_scale(float amax) { return amax > 0.0f ? amax / kFp8Max : 1.0f; }

}  // namespace topk
