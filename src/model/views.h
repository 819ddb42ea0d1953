// Small tensor helpers of the engine: views at an element offset of a buffer, reshapes, row
// ranges, and scratch buffers that grow to the largest size asked and are then reused (a step
// allocates nothing once the first step has run).
#pragma once
#include <initializer_list>

#include "topk/core.h"

namespace topk {

// A contiguous view of `shape` starting `offset` elements into t's memory (dtype and device
// of t). The caller guarantees the range lies inside t.
inline TensorView view_at(const TensorView& t, int64_t offset, std::initializer_list<int64_t> shape) {
  return make_view(static_cast<char*>(t.data) + size_t(offset) * dtype_size(t.dtype), t.dtype,
                   shape, t.device);
}

// The same contiguous memory seen with another shape of equal size.
inline TensorView reshape(const TensorView& t, std::initializer_list<int64_t> shape) {
  TensorView r = make_view(t.data, t.dtype, shape, t.device);
  TOPK_ASSERT(t.is_contiguous() && r.numel() == t.numel());
  return r;
}

// Rows [r0, r1) of a contiguous tensor (first dim).
inline TensorView row_range(const TensorView& t, int64_t r0, int64_t r1) {
  int64_t per = t.shape[0] ? t.numel() / t.shape[0] : 0;
  TensorView r = t;
  r.data = static_cast<char*>(t.data) + size_t(r0 * per) * dtype_size(t.dtype);
  r.shape[0] = r1 - r0;
  return r;
}

// A view of `shape` over b, reallocating b (zero-filled) when it is too small, of another
// dtype or on another device. Contents are kept only when no reallocation happens.
inline TensorView scratch(Buffer& b, DType dtype, std::initializer_list<int64_t> shape,
                          Device device) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (b.view().dtype != dtype || b.view().device != device || b.numel() < n ||
      b.view().empty())
    b = Buffer(dtype, {n > 0 ? n : 1}, device);
  return make_view(b.view().data, dtype, shape, device);
}

}  // namespace topk
