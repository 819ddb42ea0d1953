// The Lightning Indexer of a layer (DeepSeek-V3.2, DeepSeek Sparse Attention), for a
// Llama-style model without q-LoRA, on either device. From the layer's normed input xn1 [N, H]:
//
//   qi = rope(xn1 Wq^T)                      [N, HI, dI]   queries, one per indexer head
//   ki = rope(layernorm(xn1 Wk^T))           [N, 1, dI]    one key per token, shared by the heads
//   w  = (xn1 Wp^T) / sqrt(HI * dI)          [N, HI]       per-head weights, f32
//   I(t, s) = sum_j w[t, j] ReLU(qi[t, j] . ki[s])         (indexer_scores, topk/approx.h)
//
// RoPE turns the first index_rope_head_dim / 2 rotate_half pairs (model/rope.h index_inv_freq).
// Parameters (Hugging Face names, model.layers.N.self_attn.indexer.*): wq.weight [HI dI, H],
// wk.weight [dI, H], k_norm.weight and k_norm.bias [dI], weights_proj.weight [HI, H].
// The keys are cached in the compute dtype (f32 on the CPU, bf16 on CUDA), or as FP8 E4M3 with
// a scale per key (CacheOpts::indexer_fp8, indexer_quantize_keys). Not done: DeepSeek's
// Hadamard rotation of qi and ki (an orthogonal map: it leaves every qi . ki, hence I,
// unchanged, and matters only for the FP8 rounding, which it spreads over the dimensions).
//
// Decoding: the `indexer` policy selects index_topk keys per query by I, shared by every head,
// and attends over them (model/attend.cpp); the keys live in KVCache::ki beside the KV cache.
// Training (IndexerTrain in model/layer.h): the KL divergence from the attention's head-mean
// distribution to softmax(I) over every visible key (dense warm-up) or over the selected keys
// (sparse stage), with the indexer's input detached: its gradient reaches only its parameters.
#pragma once
#include <span>

#include "model/layer.h"

namespace topk {

// Projections of the rows of xn1 [N, H] (compute dtype) at positions pos [N] i32: a.k (with
// a.kraw, a.mean, a.rstd) always, a.q and a.w when `queries`.
void indexer_project(const Model& m, int l, const TensorView& xn1, const TensorView& pos,
                     IndexerActs& a, bool queries);

// The selection budget of the indexer under a policy: its k= when given, else index_topk.
SelectOpts indexer_select_opts(const Model& m, const AttnPolicy& pol);

// dst [R, H, K] = src [R, K] copied to each of the H rows of every r (device tensors, i32);
// map: a scratch buffer for the row map.
void broadcast_rows(const TensorView& src, int64_t H, const TensorView& dst, Buffer& map);

// The indexer's selection over packed sequences (cu_seqlens, causal) from a.q, a.w, a.k: a.one
// [N, a.K] (the keys of each query), and idx [1, N, Hkv, a.K] (its copy per KV head, for the
// sparse attention). Scores are computed per sequence and block of rows, never for the packed
// N x N matrix.
void indexer_select_packed(const Model& m, std::span<const int32_t> cu_seqlens,
                           const SelectOpts& sel, IndexerActs& a, Buffer& idx);

// The training step of layer l inside its forward (packed form): the KL loss of the rows of
// cu_seqlens against the attention whose q [1, N, Hq, D], k [1, N, Hkv, D] and lse [1, N, Hq]
// are given (full attention for the dense stage, the sparse attention over a.one for the sparse
// stage), added to tr.loss; the gradient of the indexer's parameters, times tr.scale, added to
// tr.grad. xn1 [N, H] and pos [N] as given to indexer_project.
void indexer_train(const Model& m, int l, const TensorView& xn1, const TensorView& pos,
                   std::span<const int32_t> cu_seqlens, const TensorView& q, const TensorView& k,
                   const TensorView& lse, IndexerActs& a, IndexerTrain& tr);

}  // namespace topk
