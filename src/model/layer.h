// One transformer layer, forward and backward, on any device: the only place the layer body is
// written. Training, whole-sequence forwards, prefill and decode all run through it; what
// differs is where attention finds its keys (AttnSite) and whether activations are kept.
//
//   xn1 = rmsnorm(x);  q, k, v = xn1 Wq^T (+b), ...;  [qwen3: per-head rmsnorm of q, k]
//   rope(q, k);  o = attention(q, k, v);  h1 = x + o Wo^T (+b)
//   xn2 = rmsnorm(h1);  [gate | up] = xn2 [Wg; Wu]^T;  out = h1 + (silu(gate) * up) Wd^T
//
// The residual stream (x, h1, out) and every gradient of it are f32. GEMM operands and the
// tensors attention reads are the "compute dtype": bf16 on CUDA, f32 on the CPU.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "model/attend.h"
#include "model/model.h"
#include "model/policy.h"

namespace topk {

struct KVCache;

// Indexer training (model/indexer.h), packed form only: each layer adds its indexer's KL loss
// (summed over query rows) to `loss` and the gradient of that sum times `scale` to the indexer's
// parameters in `grad` ([numel] f32, the layout of Model::w). sparse: the KL runs over the
// indexer's own selection (the sparse stage; the policy must be `indexer`), else over every
// visible key (the dense warm-up).
struct IndexerTrain {
  TensorView grad;
  float scale = 1;
  bool sparse = false;
  double loss = 0;  // summed over layers and rows
};

// src as a GEMM operand of dtype cd: itself when it already has it, else converted into tmp
// (2-D: rows of src's first dim).
TensorView as_compute(const TensorView& src, DType cd, Buffer& tmp);

// Where a layer's attention reads keys and values.
//  Packed (cache == nullptr): the call's own k, v over the sequences of cu_seqlens, causal;
//    policy full or topk (training and whole-sequence forwards).
//  Cache: the layer's new k, v rows go to rows `append_rows` of the cache ([B * max_len], -1
//    for padding rows), then the queries [B, T] attend over it under the policy (prefill and
//    decode; every policy).
struct AttnSite {
  AttnPolicy pol;
  std::span<const int32_t> cu_seqlens;  // [B+1] host; packed form
  KVCache* cache = nullptr;
  TensorView append_rows;                // [N] i32 on the device; cache form
  int B = 0, T = 0;                      // cache form: q rows are [B, T]
  std::span<const int32_t> seqlens_q;    // [B] new tokens per sequence (host)
  std::span<const int32_t> seqlens_k;    // [B] cached tokens after the append (host)
  std::vector<std::vector<AttnStats>>* stats = nullptr;  // [B][L]: the last row's statistics
  // When set, the attention ops' seconds are added here (the device is synchronised around
  // them, so only for measurements).
  double* fwd_seconds = nullptr;
  double* bwd_seconds = nullptr;
  IndexerTrain* ix_train = nullptr;  // packed form: train the indexer in the forward
};

// The indexer's activations and scratch of one layer (model/indexer.cpp).
struct IndexerActs {
  Buffer q, kraw, k, w, mean, rstd;  // qi [N, HI, dI], ki before / after norm and RoPE [N, dI],
                                     // w [N, HI] f32, LayerNorm statistics [N]
  Buffer scores, one, rows;          // selection: scores, one row per query [N, K], broadcast map
  Buffer k8, kscale;                 // the new keys for an FP8 cache: E4M3 [N, dI], scales [N]
  int64_t K = 0;                     // columns of `one`
  Buffer loss, dq, dw, dk, dkraw, dq_c, dk_c, dw_c;  // training
};

// What the backward needs of one layer's forward (everything but the input x).
struct LayerActs {
  Buffer rstd1, xn1, qraw, kraw, qrstd, krstd, q, k, v, o, lse, idx, h1, rstd2, xn2, gu, act;
  int64_t K = 0;     // index columns of idx (top-k, indexer)
  int64_t hsel = 0;  // index rows of idx per query (Hq, or Hkv when shared by a group / all heads)
  IndexerActs ix;
};

// Scratch of the backward, shared by every layer.
struct LayerGrads {
  Buffer dout_c, dact, dgu, dxn, dh1, dh1_c, dO, dq, dk, dv, dq_c, dk_c, dv_c, dqn, dkn;
};

// x [N, H] f32 -> out [N, H] f32 (distinct memory); pos [N] i32: each row's position.
void layer_forward(const Model& m, int l, const TensorView& x, const TensorView& out,
                   const TensorView& pos, const AttnSite& site, LayerActs& a);

// From dout [N, H] f32 (gradient of the layer's output) writes dx [N, H] f32 (gradient of its
// input x; distinct from dout) and adds the weight gradients into grad [numel] f32.
void layer_backward(const Model& m, int l, const TensorView& x, const TensorView& pos,
                    const AttnSite& site, LayerActs& a, const TensorView& dout,
                    const TensorView& dx, const TensorView& grad, LayerGrads& g);

}  // namespace topk
