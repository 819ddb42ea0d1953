// Whole-sequence forward and backward of the transformer over a packed batch (training,
// evaluation, prefill without cache). Sequences are packed back to back: token rows
// cu_seqlens[b] .. cu_seqlens[b+1]-1 form sequence b and never attend to each other.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "model/policy.h"

namespace topk {

struct Batch {
  std::vector<int> tokens;           // [N]
  std::vector<int> targets;          // [N] next-token targets; -1 where there is none
  std::vector<float> mask;           // [N] loss weight (0 or 1); empty = 1 where target >= 0
  std::vector<int32_t> cu_seqlens;   // [B+1]
  std::vector<int> pos;              // [N] position inside its sequence
  int size() const { return int(tokens.size()); }
};

// Packs sequences; targets are the next token of the same sequence (-1 on the last).
// loss_from[b] (optional): the first position of sequence b whose next token counts in the loss.
Batch make_batch(const std::vector<std::vector<int>>& seqs, const std::vector<int>& loss_from = {});

struct LayerActs {
  std::vector<float> x, rstd1, xn1, qraw, kraw, qrstd, krstd, q, k, v, o, lse, h1, rstd2, xn2,
      gate, up, act;
  std::vector<int32_t> idx;  // top-k indices [N, Hsel, K]
  int64_t K = 0;
};

struct Acts {
  std::vector<LayerActs> L;
  std::vector<float> xf, rstdf, xnf, logits;  // logits [N, V]
  // Seconds spent inside the attention ops, summed over layers (model_forward adds to attn_fwd_s,
  // model_backward to attn_bwd_s): the split that `topk bench train` reports.
  double attn_fwd_s = 0, attn_bwd_s = 0;
};

// Runs the model; logits land in a.logits. Saves what the backward needs.
void model_forward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a);

// Cross-entropy over rows with a target and mask > 0. Returns the sum of mask * nll and adds
// count (the sum of mask) to *count. When dlogits is given it is overwritten with
// grad_scale * mask * (softmax - onehot) (rows without loss get 0).
double cross_entropy(const float* logits, const Batch& b, int V, float* dlogits, float grad_scale,
                     double* count);

// Accumulates the gradient of the loss (whose logits gradient is dlogits) into grad
// (same layout as m.w). Uses and clobbers a.
void model_backward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a,
                    const float* dlogits, float* grad);

}  // namespace topk
