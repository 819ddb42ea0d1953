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

// Sink + sliding window: row t (n = q_pos + t + 1 visible keys) lists keys 0..min(sink, n)-1 and
// max(sink, n - w)..n-1. out: [1, T, H, K] i32 (host) with K >= min(sink + w, S); rest -1.
void window_indices(int64_t q_pos, int sink, int w, const TensorView& out);

// q [B, T, Hq, D]: sequence b's first seqlens_q[b] rows, at positions seqlens_k[b] -
// seqlens_q[b] + t; k, v [B, S, Hkv, D]: the cache, sequence b's first seqlens_k[b] rows valid;
// o [B, T, Hq, D], lse [B, T, Hq] (rows past seqlens_q[b] are not written). Causal. layer: seeds
// the oracle's choice per layer. stats (optional, T = 1): (*stats)[b][layer] receives sequence
// b's statistics.
void policy_attention(const AttnPolicy& pol, int layer, const TensorView& q, const TensorView& k,
                      const TensorView& v, std::span<const int32_t> seqlens_q,
                      std::span<const int32_t> seqlens_k, const TensorView& o,
                      const TensorView& lse, std::vector<std::vector<AttnStats>>* stats);

}  // namespace topk
