// The warp-level selection steps of the warp select over stored rows
// (topk/stored_select_attend_warps.cu) and of the filtered path's thresholds
// (topk/tile_filter.cu): one rule for the sample's rank, one radix select of a warp.
#pragma once
#include <cmath>

#include "attention/cuda/common.cuh"

namespace topk::cuda {

constexpr unsigned kFull = 0xffffffffu;

// The rank r of a sample of ns of a row's m competing keys whose r-th largest is the row's
// threshold tau: the budget's share of the sample plus three deviations and a margin, so that
// the row's keys >= tau number the budget `take` or more (about take + 3 sqrt(take m / ns) +
// 8 m / ns of them). tau keeps every key when r is past the sample.
__device__ __forceinline__ int sample_rank(int take, int ns, int m) {
  const float share = float(take) * float(ns) / float(m);
  return int(ceilf(share + 3.f * sqrtf(share))) + 8;
}

// The need-th largest key (1 <= need <= count) of get(0 .. count) as T, and how many of the
// keys equal to T are taken (the lowest positions first): `digits` digits of 8 bits from the
// top (4: exact; fewer: T is the lower edge of the bin holding that key), each a histogram in
// hist (256 ints of this warp) and a scan across the warp. Each lane reads kBatch keys before
// the first of their atomics: more than one where get reads global memory.
template <int kBatch = 1, class Get>
__device__ void warp_kth(Get&& get, int count, int need, int digits, int* hist, uint32_t& T,
                         int& need_eq) {
  const int lane = threadIdx.x & 31;
  uint32_t prefix = 0;
  for (int shift = 24; shift >= 32 - 8 * digits; shift -= 8) {
    for (int b = lane; b < 256; b += 32) hist[b] = 0;
    __syncwarp();
    const uint32_t high = shift == 24 ? 0u : ~0u << (shift + 8);
    // Lanes with the same digit add once (the first digits of a row's keys are mostly one).
    for (int i0 = 0; i0 < count; i0 += 32 * kBatch) {
      uint32_t k[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; u++) {
        const int i = i0 + 32 * u + lane;
        k[u] = i < count ? get(i) : 0u;
      }
#pragma unroll
      for (int u = 0; u < kBatch; u++) {
        const int i = i0 + 32 * u + lane;
        const int d = i < count && (k[u] & high) == prefix ? int(k[u] >> shift) & 255 : 256;
        const unsigned peers = __match_any_sync(kFull, d);
        if (d < 256 && (peers & ((1u << lane) - 1u)) == 0) atomicAdd(&hist[d], __popc(peers));
      }
    }
    __syncwarp();
    // Lane l holds bins 255 - 8l down to 248 - 8l: the scan runs from the top key down.
    int c[8], sum = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      c[j] = hist[255 - 8 * lane - j];
      sum += c[j];
    }
    int incl = sum;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += y;
    }
    const int src = __ffs(__ballot_sync(kFull, incl >= need)) - 1;
    int digit = 0, above = 0;
    if (lane == src) {
      int run = incl - sum;
      bool found = false;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        if (!found && run + c[j] >= need) {
          digit = 255 - 8 * lane - j;
          above = run;
          found = true;
        }
        run += c[j];
      }
    }
    digit = __shfl_sync(kFull, digit, src);
    above = __shfl_sync(kFull, above, src);
    need -= above;
    prefix |= uint32_t(digit) << shift;
    __syncwarp();  // every lane has read hist before the next digit clears it
  }
  T = prefix;
  need_eq = need;
}

}  // namespace topk::cuda
