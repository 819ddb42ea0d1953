// Whole-sequence forward and backward of the transformer over a packed batch (training,
// evaluation, prefill without cache), on the model's device. Sequences are packed back to back:
// token rows cu_seqlens[b] .. cu_seqlens[b+1]-1 form sequence b and never attend to each other.
#pragma once
#include <cstdint>
#include <vector>

#include "model/layer.h"
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

// The loss weight of the batch: the sum of mask over the rows that have a target.
double loss_count(const Batch& b);

// Everything one forward keeps for the backward, as buffers on the model's device. Reused from
// call to call: buffers grow to the largest batch and stay.
struct Acts {
  std::vector<Buffer> x;          // [L+1] x [N, H] f32: each layer's input, then the final hidden
  std::vector<LayerActs> L;       // [L], or [1] when recomputing
  LayerGrads grads;               // backward scratch
  Buffer dh, dh2;                 // [N, H] f32 gradients of the residual stream
  Buffer rstdf, xnf, logits;      // final norm; logits [N, V] (compute dtype; gradients in place)
  Buffer tokens, pos, targets, weights, losses;  // [N] on the device
  std::vector<float> losses_host;
  bool recompute = false;  // keep only each layer's input; recompute the rest in the backward
  // Seconds spent inside the attention ops, summed over layers (measured only when time_attention
  // is set: the device is synchronised around each call), as `topk bench train` reports them.
  bool time_attention = false;
  double attn_fwd_s = 0, attn_bwd_s = 0;
};

// Runs the model; logits land in a.logits. Saves what the backward needs.
void model_forward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a);

// Cross-entropy of the logits of the last model_forward: returns the sum over rows of
// mask * nll (rows with a target) and adds that mask's sum to *count. When grad_scale != 0 the
// logits are overwritten with their gradient, grad_scale * mask * (softmax - onehot), ready for
// model_backward.
double model_loss(const Model& m, const Batch& b, Acts& a, float grad_scale,
                  double* count = nullptr);

// Accumulates into grad ([numel] f32 on the model's device, the layout of Model::w) the gradient
// of the loss whose logits gradient model_loss left in a.logits. Uses and clobbers a.
void model_backward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a,
                    const TensorView& grad);

// The logits of the last forward on the host, as f32 (the first N * V values are [N, V]).
std::vector<float> logits_host(const Acts& a);

}  // namespace topk
