// The selection rule, written once for the reference, the CPU kernels and the CUDA kernels
// (docs/semantics.md, "Budget", "Forced keys" and "Ranking"): a row's budget W, its split into
// forced keys and keys that compete, the order-preserving key of a score, and the floors a
// filter compares scores with. Host and device compile the same lines. The budget's one
// rounding-sensitive step is an explicit fma, so no compiler contracts it one way on the host
// and another on the device.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/bitcast.h"

namespace topk {

// W of a row that sees n keys: k (count) or ceil(ratio * n) (ratio) with a relative tolerance
// of 1e-9, so that ratio = 0.07 and n = 100 give 7 although 0.07 * 100 rounds up in binary;
// then at least min_k, then within [1, n]; 0 when n = 0.
TOPK_HOST_DEVICE inline int64_t budget_of(int k, double ratio, int min_k, int64_t n) {
  if (n <= 0) return 0;
  int64_t w;
  if (k > 0) {
    w = k;
  } else {
    const double x = ratio * double(n);
    w = int64_t(ceil(fma(-1e-9, x, x)));
  }
  if (w < min_k) w = min_k;
  if (w < 1) w = 1;
  if (w > n) w = n;
  return w;
}

// The selection of a row that sees n keys: the forced sink [0, lo) and window [hi, n) (forced
// keys in all, the two may overlap), and `take` of the m = hi - lo keys between them, the best
// ranked, filling what the forced keys leave of W. Forced keys beyond W are all kept.
struct RowSel {
  int64_t lo, hi, m, forced, take;
};
TOPK_HOST_DEVICE inline RowSel row_sel(int k, double ratio, int min_k, int sink, int window,
                                       int64_t n) {
  RowSel r;
  const int64_t W = budget_of(k, ratio, min_k, n);
  r.lo = sink < n ? sink : n;
  r.hi = window < n ? n - window : 0;
  if (r.hi < r.lo) r.hi = r.lo;
  r.m = r.hi - r.lo;
  r.forced = r.lo + (n - r.hi);
  const int64_t room = W - r.forced;
  r.take = room <= 0 ? 0 : (room < r.m ? room : r.m);
  return r;
}

// Order-preserving key of a score: a ranks before b iff order_key(a) > order_key(b) (ties then
// go to the lower index). -0 equals +0; NaN is 0, below every number including -inf.
// Branch-free: score signs are random.
TOPK_HOST_DEVICE inline uint32_t order_key(float f) {
  uint32_t u = f32_bits(f);
  u = u == 0x80000000u ? 0u : u;
  const uint32_t flip = uint32_t(int32_t(u) >> 31) | 0x80000000u;
  return f != f ? 0u : u ^ flip;
}

// The least score whose key is >= t, so that a filter compares scores (one instruction) instead
// of keys: for every number x, order_key(x) >= t iff x >= key_floor(t). Keys at or below -inf's
// give -inf (every number passes; NaN, key 0, passes only t = 0, which callers test apart);
// keys above +inf's give a NaN, which no number passes.
TOPK_HOST_DEVICE inline float key_floor(uint32_t t) {
  if (t <= 0x007fffffu) return -__builtin_inff();  // order_key(-inf) = 0x007fffff
  // The inverse of order_key; t = 0x7fffffff (-0's unused key) gives -0, the same floor as +0.
  return f32_of_bits((t & 0x80000000u) ? (t & 0x7fffffffu) : ~t);
}

// The least score x with x * scale >= f, for scale > 0 (a NaN when there is none, which no
// score passes): a rounded product is monotone in x, so a filter may compare unscaled products
// with this instead of scaling each one. A binary search over the order keys of the numbers.
TOPK_HOST_DEVICE inline float unscaled_floor(float f, float scale) {
  uint32_t lo = 0x007fffffu, hi = 0xff800000u;  // order keys of -inf and +inf
  if (!(key_floor(hi) * scale >= f)) return f32_of_bits(0x7fc00000u);
  while (lo < hi) {  // the least key in [lo, hi] whose score passes
    const uint32_t mid = lo + (hi - lo) / 2;
    if (key_floor(mid) * scale >= f) hi = mid;
    else lo = mid + 1;
  }
  return key_floor(lo);
}

}  // namespace topk
