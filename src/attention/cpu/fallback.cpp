// CPU entry points that do not have a fast path yet run the reference.
#include "attention/params.h"

namespace topk::cpu {

void attention_forward(const AttnParams& p) { ref::attention_forward(p); }
void attention_backward(const AttnParams& p) { ref::attention_backward(p); }
void attention_scores(const AttnParams& p, float* scores) { ref::attention_scores(p, scores); }
void topk_select(const SelectParams& p) { ref::topk_select(p); }
void sparse_forward(const AttnParams& p) { ref::sparse_forward(p); }
void sparse_backward(const AttnParams& p) { ref::sparse_backward(p); }
void entropy(const AttnParams& p, float* e, float* n) { ref::entropy(p, e, n); }
void selection_mass(const AttnParams& p, float* m) { ref::selection_mass(p, m); }

}  // namespace topk::cpu
