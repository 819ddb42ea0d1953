// The model's dense building blocks on the CPU, forward and backward, fp32.
// Row-major throughout; N is the number of token rows.
#pragma once
#include <vector>

#include "model/config.h"

namespace topk {

// y[N, out] = x[N, in] W[out, in]^T (+ b[out]).
void linear_fwd(const float* x, const float* W, const float* b, float* y, int N, int in, int out);
// dx[N, in] = dy W (+= when dx_acc); dW[out, in] += dy^T x; db[out] += sum_n dy. dx, dW, db
// may be null to skip them.
void linear_bwd(const float* x, const float* W, const float* dy, float* dx, bool dx_acc, float* dW,
                float* db, int N, int in, int out);

// y = x / sqrt(mean(x^2) + eps) * w over rows of H; rstd[N] keeps 1/sqrt(...) for the backward.
void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int N, int H, float eps);
// dx[N, H] += d/dx; dw[H] += d/dw.
void rmsnorm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx,
                 float* dw, int N, int H);

// RoPE inverse frequencies [D/2] (rope_theta, llama3 scaling as Hugging Face computes them).
std::vector<float> rope_inv_freq(const ModelConfig& c);
// Rotates x[N, Hh, D] in place by the angle pos[n] * inv_freq (Hugging Face rotate_half
// layout: pairs (i, i + D/2)). inverse = rotate back, which is the backward.
void rope_apply(float* x, const int* pos, int N, int Hh, int D, const float* inv_freq, bool inverse);

inline float silu(float x) { return x / (1.0f + __builtin_expf(-x)); }

}  // namespace topk
