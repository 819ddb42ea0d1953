// Attention of one sequence under an attention policy (model/policy.h), with optional per-head
// statistics of the last query row: what `topk eval` records during decoding.
#pragma once
#include <cstdint>
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
// row, position). Writes rows of the same shape.
void oracle_mix(const TensorView& exact, int64_t q_pos, double precision, uint64_t seed, int layer,
                const TensorView& out);

// Sink + sliding window: row t (n = q_pos + t + 1 visible keys) lists keys 0..min(sink, n)-1 and
// max(sink, n - w)..n-1. out: [1, T, H, K] i32 with K >= min(sink + w, S); rest -1.
void window_indices(int64_t q_pos, int sink, int w, const TensorView& out);

// q [1, T, Hq, D] at positions S-T..S-1, k, v [1, S, Hkv, D] (all f32, one sequence, causal).
// o [1, T, Hq, D], lse [1, T, Hq]. layer: seeds the oracle's choice per layer. stats (optional):
// the last query row's statistics.
void policy_attention(const AttnPolicy& pol, int layer, const TensorView& q, const TensorView& k,
                      const TensorView& v, const TensorView& o, const TensorView& lse,
                      AttnStats* stats);

}  // namespace topk
