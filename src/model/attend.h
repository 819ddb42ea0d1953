// Attention of a batch of sequences over their KV cache under an attention policy
// (model/policy.h), with optional per-head statistics of each sequence's last query row:
// what `topk eval` records during decoding. Runs on the tensors' device.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "model/policy.h"
#include "topk/attention.h"

namespace topk {

// Statistics of one query row (the last row of a call), per query head; docs/eval.md defines
// them, docs/semantics.md defines the ops that compute them.
struct AttnStats {
  int64_t visible = 0;  // n: keys the query sees
  int64_t budget = 0;   // W: keys the policy attended to (n for full attention)
  std::vector<float> precision;     // [Hq] |selected ∩ exact top-W| / W (retrieval_precision);
                                    //      NaN for full attention
  std::vector<float> mass;          // [Hq] full-softmax mass of the selected keys (selection_mass)
  std::vector<float> entropy;       // [Hq] entropy of the full softmax, nats (attention_entropy)
  std::vector<float> entropy_norm;  // [Hq] entropy / ln n
};

// The oracle selector over exact top-W rows [1, T, Hsel, K] (ascending or any order, -1 padded):
// for each row keeps round(precision * W) of its W keys, chosen at random, and fills the other
// slots with distinct keys of 0..n-1 outside the row (n = the row's visible keys: q_pos + t + 1),
// chosen at random; fewer when fewer such keys exist. The choice is a function of (seed, layer,
// row, position). Writes rows of the same shape. Host tensors.
void oracle_mix(const TensorView& exact, int64_t q_pos, double precision, uint64_t seed, int layer,
                const TensorView& out);

// Entropy-adaptive budgets (topk:...,adapt=entropy) of one query over n visible keys: the H
// query heads share H * W keys (W: the policy's uniform budget, 1 <= W <= n). Every head gets
// one key; the other H * (W - 1) go to the heads in proportion to their attention entropy
// entropy[h] (nats, >= 0; equal shares when all are 0), no head past n keys: shares above n - 1
// are capped and the rest re-shared among the others, then the integer parts are taken and the
// keys left go one each to the largest fractional parts (ties: lower head). So the budgets sum
// to H * W, lie in [1, n], rise with entropy, and equal entropies give every head W.
std::vector<int64_t> entropy_budgets(std::span<const double> entropy, int64_t W, int64_t n);

// Entropy (nats) of the softmax over the n scores of a row (the full attention of one query).
double softmax_entropy(const float* scores, int64_t n);

// The adaptive selection: for each row of scores [B, T, Hq, S] (host; row t of sequence b sees
// q_pos_b + t + 1 keys, q_pos_b = seqlens_k[b] - seqlens_q[b]), the budgets of entropy_budgets
// from each head's entropy and the uniform budget of `sel` at that n, then each head's exact
// top-W_h keys (score order, ties: lower index), written ascending. out: [B, T, Hq, K] host,
// K >= the largest W_h; unused entries -1.
void adaptive_select(const TensorView& scores, std::span<const int32_t> seqlens_q,
                     std::span<const int32_t> seqlens_k, const SelectOpts& sel,
                     const TensorView& out);

// Sink + sliding window: row t (n = q_pos + t + 1 visible keys) lists keys 0..min(sink, n)-1 and
// max(sink, n - w)..n-1. out: [1, T, H, K] i32 (host) with K >= min(sink + w, S); rest -1.
void window_indices(int64_t q_pos, int sink, int w, const TensorView& out);

// The indexer's inputs of a call under the `indexer` policy (model/indexer.h).
struct IndexerInput {
  TensorView q;     // [B, T, HI, dI] queries of the call's rows
  TensorView w;     // [B, T, HI] f32 weights
  TensorView k;     // [B, S, 1, dI] the indexer's key cache
  TensorView k_scale;  // [B, S] f32 scales when k is f8e4m3 (KVCache::ki_scale), else empty
  SelectOpts sel;   // its budget (index_topk, or the policy's k=)
};

// q [B, T, Hq, D]: sequence b's first seqlens_q[b] rows, at positions seqlens_k[b] -
// seqlens_q[b] + t; k, v [B, S, Hkv, D]: the cache, sequence b's first seqlens_k[b] rows valid;
// o [B, T, Hq, D], lse [B, T, Hq] (rows past seqlens_q[b] are not written). Causal. layer: seeds
// the oracle's choice per layer. stats (optional, T = 1): (*stats)[b][layer] receives sequence
// b's statistics. ix: the indexer's inputs, required by (and only read under) the indexer policy.
void policy_attention(const AttnPolicy& pol, int layer, const TensorView& q, const TensorView& k,
                      const TensorView& v, std::span<const int32_t> seqlens_q,
                      std::span<const int32_t> seqlens_k, const TensorView& o,
                      const TensorView& lse, std::vector<std::vector<AttnStats>>* stats,
                      const IndexerInput* ix = nullptr);

}  // namespace topk
