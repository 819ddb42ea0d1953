// The model's dense ops over TensorView, forward and backward, on the CPU and on CUDA.
// The transformer (model/layer.cpp) calls only these and the attention ops; each op checks its
// tensors once (ops.cpp), then switches on their device: the only place a device is chosen.
//
//  CPU:  f32 tensors; GEMMs through OpenBLAS, the rest OpenMP over rows (one parallel region
//        per call).
//  CUDA: GEMM operands bf16 with f32 accumulation (cuBLAS); elementwise ops read f32 or bf16
//        and compute in f32; every reduction has a fixed order, so a step gives the same bits
//        on every run (no float atomics).
//
// Shapes use N for token rows. Every tensor is contiguous and row-major; a 2-D [N, C] view is
// also accepted as any view with the same rows (a [N, Hh, D] tensor is [N, Hh * D]). All
// tensors of one call are on one device. Where an op writes "(+)=", it accumulates when its
// `accumulate` flag is set and overwrites otherwise.
#pragma once
#include <cstdint>
#include <span>

#include "topk/core.h"

namespace topk::ops {

// C[M, N] = alpha * op(A) op(B) + beta * C, op(X) = X^T when its flag is set; 2-D row-major.
// CPU: A, B, C f32. CUDA: A, B bf16 and C f32 or bf16 (beta must be 0 for a bf16 C), or A, B,
// C f32 (f32 compute, no TF32).
void gemm(const TensorView& C, const TensorView& A, bool trans_a, const TensorView& B,
          bool trans_b, float alpha = 1.0f, float beta = 0.0f);

// y[N, C] += b[C] (broadcast over rows). y f32 or bf16; b f32 or bf16.
void add_bias(const TensorView& y, const TensorView& b);
// db[C] += sum_n dy[n, C]. db f32; dy f32 or bf16.
void bias_grad(const TensorView& db, const TensorView& dy);

// out[n] = table[tokens[n]]. out [N, H] f32; table [V, H] f32 or bf16; tokens [N] i32 on the
// same device, each in [0, V) (checked by the caller: the engine validates ids on the host).
void embedding_forward(const TensorView& out, const TensorView& table, const TensorView& tokens);
// dtable[tokens[n]] += dout[n] for every n. dtable [V, H] f32; dout [N, H] f32. tokens_host: the
// same ids on the host; rows of one id are summed in the order of n, so the result is the same
// on every run.
void embedding_backward(const TensorView& dtable, const TensorView& dout,
                        std::span<const int32_t> tokens_host);

// RMSNorm over the last dim: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps).
// x [N, H] f32 or bf16; w [H] f32 or bf16; y [N, H] f32 or bf16 (may alias x when the dtypes
// match); rstd [N] f32, or empty when the backward is not needed.
void rmsnorm_forward(const TensorView& y, const TensorView& rstd, const TensorView& x,
                     const TensorView& w, float eps);
// dx [N, H] f32 (+)= the gradient of y wrt x; dw [H] f32 += the gradient wrt w (empty: skip).
// dy [N, H] f32 or bf16; x, w, rstd as in the forward.
void rmsnorm_backward(const TensorView& dx, bool accumulate, const TensorView& dw,
                      const TensorView& dy, const TensorView& x, const TensorView& w,
                      const TensorView& rstd);

// LayerNorm over the last dim (biased variance): y = (x - mean) * rstd * w + b,
// rstd = 1 / sqrt(mean((x - mean)^2) + eps). x [N, C] f32 or bf16; w, b [C] f32 or bf16;
// y [N, C] f32 or bf16 (may alias x when the dtypes match); mean, rstd [N] f32, or both empty
// when the backward is not needed.
void layernorm_forward(const TensorView& y, const TensorView& mean, const TensorView& rstd,
                       const TensorView& x, const TensorView& w, const TensorView& b, float eps);
// dx [N, C] f32 = the gradient of y wrt x (overwritten); dw, db [C] f32 += the gradients wrt w
// and b. dy [N, C] f32 or bf16; x, w, mean, rstd as in the forward.
void layernorm_backward(const TensorView& dx, const TensorView& dw, const TensorView& db,
                        const TensorView& dy, const TensorView& x, const TensorView& w,
                        const TensorView& mean, const TensorView& rstd);

// Rotary embedding in place on x [N, Hh, D] (f32 or bf16), Hugging Face rotate_half layout:
// the pair (i, i + D/2) of row n turns by the angle pos[n] * inv_freq[i]. inverse turns back,
// which is the backward. pos [N] i32; inv_freq [D/2] f32 (model/rope.h computes it).
void rope(const TensorView& x, const TensorView& pos, const TensorView& inv_freq, bool inverse);

// SwiGLU: act[n, i] = silu(gu[n, i]) * gu[n, I + i], where gu [N, 2I] holds the gate in its
// first I columns and the up projection in the last I (one GEMM makes both).
// act [N, I] f32 or bf16; gu f32 or bf16.
void swiglu_forward(const TensorView& act, const TensorView& gu);
// dgu [N, 2I] (f32 or bf16) = the gradients of act wrt the gate and up columns; dact [N, I].
void swiglu_backward(const TensorView& dgu, const TensorView& dact, const TensorView& gu);

// Cross-entropy over the vocabulary, per row n: when weights[n] > 0 and targets[n] >= 0,
// losses[n] = weights[n] * (logsumexp(logits[n]) - logits[n, targets[n]]); else losses[n] = 0.
// logits [N, V] f32 or bf16; targets [N] i32 (< V, checked by the caller); weights, losses [N]
// f32. When dlogits is given ([N, V], logits' dtype; it may alias logits), it is overwritten with
// grad_scale * weights[n] * (softmax(logits[n]) - onehot(targets[n])), 0 on rows without loss.
void cross_entropy(const TensorView& losses, const TensorView& dlogits, const TensorView& logits,
                   const TensorView& targets, const TensorView& weights, float grad_scale);

// y = a + b elementwise (same shapes; y may alias a or b). f32 or bf16 each.
void add(const TensorView& y, const TensorView& a, const TensorView& b);
// x *= s. f32.
void scale(const TensorView& x, float s);
// dst = src with a dtype conversion (f32 <-> bf16, or a plain copy), same device and shape.
void convert(const TensorView& dst, const TensorView& src);
// x = 0 (any dtype).
void zero(const TensorView& x);
// Sum of x^2 over all elements (x f32), accumulated in a fixed order; returned on the host.
double sum_squares(const TensorView& x);
// False when x (f32 or bf16) holds a NaN or an infinity.
bool all_finite(const TensorView& x);

// dst[index[n]] = src[n] for each row n of src with index[n] >= 0 (rows of dst are the first
// dim; the rest of each row is copied as is). dst [R, ...], src [N, ...] of the same row size
// and dtype; index [N] i32 on the same device, each < R and distinct.
void scatter_rows(const TensorView& dst, const TensorView& index, const TensorView& src);
// dst[n] = src[index[n]] for each row n of dst. index [N] i32, each in [0, R).
void gather_rows(const TensorView& dst, const TensorView& src, const TensorView& index);

// One AdamW update of w [P] f32 (decoupled weight decay) from grad [P] f32, with moments
// m, v [P] f32 updated in place; t is the update's 1-based count (bias correction). When
// w_low is given (bf16 [P]), it receives the updated weights rounded to bf16.
struct AdamWStep {
  float lr = 0, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0;
  int64_t t = 1;
};
void adamw(const TensorView& w, const TensorView& grad, const TensorView& m, const TensorView& v,
           const TensorView& w_low, const AdamWStep& s);

}  // namespace topk::ops
