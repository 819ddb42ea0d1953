// Backend entry points of the model ops (model/ops.h). ops.cpp checks the tensors once and calls
// one of these; they trust their arguments (shapes agree, dtypes are among those ops.h allows,
// every tensor is contiguous and on the backend's device). The meaning of each is in ops.h.
#pragma once
#include <cstdint>
#include <span>

#include "model/ops.h"

namespace topk::ops {

// Rows and columns of a tensor seen as 2-D [rows, cols] over its first dim.
inline int64_t rows_of(const TensorView& t) { return t.ndim == 0 ? 0 : t.shape[0]; }
inline int64_t cols_of(const TensorView& t) {
  int64_t c = 1;
  for (int i = 1; i < t.ndim; i++) c *= t.shape[i];
  return c;
}

#define TOPK_OPS_BACKEND(ns)                                                                     \
  namespace ns {                                                                                 \
  void gemm(const TensorView& C, const TensorView& A, bool trans_a, const TensorView& B,          \
            bool trans_b, float alpha, float beta);                                              \
  void add_bias(const TensorView& y, const TensorView& b);                                       \
  void bias_grad(const TensorView& db, const TensorView& dy);                                    \
  void embedding_forward(const TensorView& out, const TensorView& table,                         \
                         const TensorView& tokens);                                              \
  void embedding_backward(const TensorView& dtable, const TensorView& dout,                      \
                          std::span<const int32_t> tokens_host);                                 \
  void rmsnorm_forward(const TensorView& y, const TensorView& rstd, const TensorView& x,          \
                       const TensorView& w, float eps);                                          \
  void rmsnorm_backward(const TensorView& dx, bool accumulate, const TensorView& dw,             \
                        const TensorView& dy, const TensorView& x, const TensorView& w,          \
                        const TensorView& rstd);                                                 \
  void layernorm_forward(const TensorView& y, const TensorView& mean, const TensorView& rstd,      \
                         const TensorView& x, const TensorView& w, const TensorView& b, float eps); \
  void layernorm_backward(const TensorView& dx, const TensorView& dw, const TensorView& db,       \
                          const TensorView& dy, const TensorView& x, const TensorView& w,        \
                          const TensorView& mean, const TensorView& rstd);                       \
  void rope(const TensorView& x, const TensorView& pos, const TensorView& inv_freq,               \
            bool inverse);                                                                       \
  void swiglu_forward(const TensorView& act, const TensorView& gu);                              \
  void swiglu_backward(const TensorView& dgu, const TensorView& dact, const TensorView& gu);     \
  void cross_entropy(const TensorView& losses, const TensorView& dlogits,                        \
                     const TensorView& logits, const TensorView& targets,                        \
                     const TensorView& weights, float grad_scale);                               \
  void add(const TensorView& y, const TensorView& a, const TensorView& b);                       \
  void scale(const TensorView& x, float s);                                                      \
  void convert(const TensorView& dst, const TensorView& src);                                    \
  void zero(const TensorView& x);                                                                \
  double sum_squares(const TensorView& x);                                                       \
  bool all_finite(const TensorView& x);                                                          \
  void scatter_rows(const TensorView& dst, const TensorView& index, const TensorView& src);       \
  void gather_rows(const TensorView& dst, const TensorView& src, const TensorView& index);        \
  void adamw(const TensorView& w, const TensorView& grad, const TensorView& m,                   \
             const TensorView& v, const TensorView& w_low, const AdamWStep& s);                  \
  }

TOPK_OPS_BACKEND(cpu)
TOPK_OPS_BACKEND(cuda)
#undef TOPK_OPS_BACKEND

}  // namespace topk::ops
