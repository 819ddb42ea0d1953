// Attention policy of one phase (prefill, decode, training): full attention, or exact top-k
// with a count or ratio budget, chosen per query head or per KV group.
//   "full" | "topk:k=64" | "topk:ratio=0.05,share=group" (+ min_k=, sink=, window=)
#pragma once
#include <string>

#include "topk/attention.h"

namespace topk {

struct AttnPolicy {
  bool topk = false;
  SelectOpts sel;
};

AttnPolicy parse_policy(const std::string& s);
std::string policy_str(const AttnPolicy& p);

}  // namespace topk
