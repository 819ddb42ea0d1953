// The approximate selectors of the decode policies `quest:` and `qkeys:` (model/policy.h), on
// either device, composed from the score ops of topk/approx.h and the select of topk/attention.h.
// Each returns the selection, per query head, [B, T, Hq, K] i32 on the tensors' device, in a
// buffer that lives until the thread's next call.
#pragma once
#include <span>

#include "model/policy.h"
#include "topk/attention.h"

namespace topk {

// q [B, T, Hq, D], k [B, S, Hkv, D]: sequence b's first seqlens_q[b] rows at positions
// seqlens_k[b] - seqlens_q[b] + t against its first seqlens_k[b] keys, causal.
//
// Quest: the page bounds of quest_scores -> the top pages of each query head (topk_select over
// the pages that hold keys of the sequence) -> the visible keys of those pages; with pages=N and
// k=W, then the exact top-W among those keys (attention_scores, mask_scores, topk_select).
TensorView quest_select(const AttnPolicy& pol, const TensorView& q, const TensorView& k,
                        std::span<const int32_t> seqlens_q, std::span<const int32_t> seqlens_k);

// Quantised keys: quantized_scores (int8 or int4 keys) -> the top rescore * W candidates ->
// (rescore > 1) the exact top-W among them.
TensorView qkeys_select(const AttnPolicy& pol, const TensorView& q, const TensorView& k,
                        std::span<const int32_t> seqlens_q, std::span<const int32_t> seqlens_k);

// The exact top-W budget that a policy's selection is compared with (retrieval precision): the
// policy's own budget, with Quest's page budget counted in keys (pages x page).
SelectOpts reference_budget(const AttnPolicy& pol);

}  // namespace topk
