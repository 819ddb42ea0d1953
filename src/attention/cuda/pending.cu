// CUDA entry points whose kernels have not landed yet raise a clear error.
#include "attention/params.h"

namespace topk::cuda {

static void pending(const char* op) {
  throw Error(detail::format_error("%s: the CUDA backend has no kernel for this op yet; run it on CPU tensors", op));
}

void attention_forward(const AttnParams&) { pending("attention_forward"); }
void attention_scores(const AttnParams&, float*) { pending("attention_scores"); }
void topk_select(const SelectParams&) { pending("topk_select"); }
void sparse_forward(const AttnParams&) { pending("sparse_attention_forward"); }
void topk_attention_forward(const AttnParams&, const SelectOpts&, int32_t*, int64_t) {
  pending("topk_attention_forward");
}

}  // namespace topk::cuda
