// AdamW (decoupled weight decay), the learning-rate schedule (linear warm-up, cosine decay to
// a floor) and global gradient-norm clipping, over the model's flat parameter vector, on the
// model's device.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace topk {

struct AdamWOpts {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
};

struct AdamW {
  Buffer m, v;     // [numel] f32 first and second moments, on the model's device
  int64_t t = 0;   // updates taken
};

AdamW adamw_create(const Model& model);
// Moves the moments to a device.
void adamw_to(AdamW& opt, Device device);
// One update with learning rate lr from grad ([numel] f32 on the model's device); decay applies
// to parameters marked decay. On CUDA the bf16 copy of the weights is refreshed in the same pass.
void adamw_step(AdamW& opt, Model& model, const TensorView& grad, float lr, const AdamWOpts& o);

struct Schedule {
  float lr = 1e-3f, min_lr = 1e-4f;
  int warmup = 0, total = 1;
};
// lr for update `step` (0-based): lr * (step+1)/warmup during warm-up, then cosine from lr to
// min_lr at step total-1.
float lr_at(const Schedule& s, int64_t step);

// The L2 norm of g (f32, any device; a fixed summation order). Scales g so that its norm is at
// most max_norm (no-op when max_norm <= 0). Returns the norm before clipping.
double clip_grad_norm(const TensorView& g, float max_norm);

}  // namespace topk
