// Approximate selectors: score ops that feed the same topk_select and sparse attention as the
// exact scores (docs/semantics.md, "Approximate scores"). Same tensors, sequences, positions and
// visibility rules as include/topk/attention.h; same dimension letters, plus HI indexer heads and
// dI indexer head dim, P pages, C listed candidates.
//
//   indexer_scores    the Lightning Indexer of DeepSeek-V3.2: one score per (query, key),
//                     shared by every attention head; its keys in the compute dtype or as
//                     FP8 E4M3 with a scale per key (indexer_quantize_keys)
//   indexer_loss      its training loss, KL(attention || softmax(indexer)) per query, and the
//                     gradient of that loss wrt the indexer's queries, weights and keys
//   quest_scores      Quest: an upper bound of q.k over each page of keys (per-page min / max)
//   quantized_scores  q.k with each key row rounded to int8 or int4 (symmetric, per row)
//   mask_scores       keeps the listed entries of score rows and sets the rest to -inf: the
//                     exact rescoring of a candidate set (then topk_select as usual)
#pragma once
#include "topk/attention.h"

namespace topk {

// I(t, s) = sum_j w[t, j] * ReLU(qi[t, j] . ki[s]) for every visible key s, -inf elsewhere.
// qi [B, T, HI, dI], ki [B, S, 1, dI] (one key per token, shared by the HI heads), f32/bf16/f16,
// last dim stride 1; w [B, T, HI] f32 contiguous: the per-head weights, which carry every scale
// (opts.scale is not used). scores [B, T, 1, S] f32 contiguous: feed it to topk_select with
// indices [B, T, 1, K] for one selection per query shared by every attention head.
void indexer_scores(const TensorView& qi, const TensorView& w, const TensorView& ki,
                    const Seqs& seqs, const AttnOpts& opts, const TensorView& scores);

// The same over FP8 keys: ki [B, S, 1, dI] f8e4m3 (last dim stride 1) with ki_scale [B, S] f32
// (last dim stride 1), as indexer_quantize_keys writes them; key s stands for the f32 vector
// ki_scale[s] * ki[s], and I(t, s) is the formula above over it. With ki in a float dtype,
// ki_scale must be empty and this is the call above.
void indexer_scores(const TensorView& qi, const TensorView& w, const TensorView& ki,
                    const TensorView& ki_scale, const Seqs& seqs, const AttnOpts& opts,
                    const TensorView& scores);

// The indexer's key cache in FP8: for every row (b, s) of ki [B, S, 1, dI] (f32, bf16 or f16,
// last dim stride 1), amax = max_d |ki[b, s, d]|, scale = amax / 448 (1 for a zero row),
// ki8[b, s, d] = E4M3(ki[b, s, d] / scale) (round to nearest even, saturating), computed in
// fp32 on every backend, so that the bytes agree; ki_scale[b, s] = scale. ki8 [B, S, 1, dI]
// f8e4m3 and ki_scale [B, S] f32, last dims of stride 1, on ki's device. The row's largest
// element is stored as +-448; relative rounding error at most 2^-4 per element (normal range).
void indexer_quantize_keys(const TensorView& ki, const TensorView& ki8, const TensorView& ki_scale);

// Indexer attention: indexer_scores -> topk_select (one row per query, budget sel; share_group
// must be false) -> sparse_attention_forward over that row for every head. indices
// [B, T, Hkv, K] i32 contiguous, K >= select_capacity(sel, longest sequence's keys), receives
// the selection in each KV head's row (the rows of one query are equal); o and lse as in
// sparse_attention_forward. q, k, v as in attention.h; qi, w, ki as in indexer_scores.
void indexer_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                               const TensorView& qi, const TensorView& w, const TensorView& ki,
                               const Seqs& seqs, const AttnOpts& opts, const SelectOpts& sel,
                               const TensorView& o, const TensorView& lse,
                               const TensorView& indices);
// The same with FP8 indexer keys and their scales (as in indexer_scores).
void indexer_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                               const TensorView& qi, const TensorView& w, const TensorView& ki,
                               const TensorView& ki_scale, const Seqs& seqs, const AttnOpts& opts,
                               const SelectOpts& sel, const TensorView& o, const TensorView& lse,
                               const TensorView& indices);

// The indexer's distillation loss, per query row (DeepSeek-V3.2's warm-up and sparse stages):
//   p(s)  = mean over the Hq heads of exp(scale q_h . k_{s, h/G} - lse_h), over the row's key
//           set, then divided by its sum over the set (L1-normalised);
//   loss  = sum_s p(s) (ln p(s) - ln softmax_set(I)(s)),   I as in indexer_scores.
// The key set is every visible key (indices empty: the dense warm-up) or the valid entries
// (0 <= j < S_b, duplicates once) of the row's list indices [B, T, 1, K] (the sparse stage:
// the keys the indexer selected). lse [B, T, Hq] f32 is the lse of the attention whose
// distribution is the target: full attention (dense), or the sparse attention over the same
// list (sparse); only the head-mean's shape matters, as it is renormalised.
// q [B, T, Hq, D], k [B, S, Hkv, D]: the attention's (RoPE applied). loss [B, T] f32. When
// dqi ([B, T, HI, dI]), dw ([B, T, HI]) and dki ([B, S, 1, dI]), f32 contiguous, are given
// (all or none), they are overwritten with the gradient of sum_rows loss: dqi and dw in the
// rows of the sequences' queries, dki whole (0 for keys no row's set holds). ReLU'(0) = 0.
// A row whose set is empty gets loss 0 and no gradient. The target passes no gradient.
void indexer_loss(const TensorView& q, const TensorView& k, const TensorView& lse,
                  const TensorView& qi, const TensorView& w, const TensorView& ki,
                  const TensorView& indices, const Seqs& seqs, const AttnOpts& opts,
                  const TensorView& loss, const TensorView& dqi, const TensorView& dw,
                  const TensorView& dki);

// Quest's page bounds: the keys of a sequence form pages of `page` keys (page p holds keys
// p*page .. p*page+page-1); for query head h and a page holding visible keys,
//   U(p) = scale * sum_d max(q_d * min_{s in p} k_{s,d}, q_d * max_{s in p} k_{s,d}),
// min and max over the page's visible keys (KV head h / G). U >= scale q.k_s for every visible
// s of the page. scores [B, T, Hq, P] f32 contiguous with P >= ceil(S / page); pages without a
// visible key are -inf. Feed to topk_select (non-causal) for the top pages.
void quest_scores(const TensorView& q, const TensorView& k, const Seqs& seqs,
                  const AttnOpts& opts, int page, const TensorView& scores);

// scale * q . k~ with each key row (token, KV head) rounded symmetrically: a = max_d |k_d|,
// step = a / L with L = 127 (bits = 8) or 7 (bits = 4), k~_d = step * round(k_d / step) (round
// half away from zero; k~ = 0 when a = 0), step and k_d / step in fp32. Like attention_scores
// otherwise: scores [B, T, Hq, S] f32, -inf where not visible.
void quantized_scores(const TensorView& q, const TensorView& k, const Seqs& seqs,
                      const AttnOpts& opts, int bits, const TensorView& scores);

// In place on score rows [B, T, H, S] f32 contiguous: every entry of row (b, t, h) whose key
// index is not among the valid entries (0 <= j < S) of indices[b, t, h / (H / Hsel)]
// ([B, T, Hsel, C] i32 contiguous, Hsel divides H) becomes -inf; listed entries keep their
// value. Every row of the tensor is processed (no sequences).
void mask_scores(const TensorView& scores, const TensorView& indices);

}  // namespace topk
