// Attention policy of one phase (prefill, decode, training):
//   full                                  full attention
//   topk:k=64 | topk:ratio=0.05,share=group (+ min_k=, sink=, window=)   exact top-k
//   window:w=256,sink=4                   the first `sink` keys and the last `w` keys
//   oracle:k=64,precision=0.6[,seed=S]    controlled-precision selector (k= or ratio=, min_k=,
//                                         share=): exact scores -> exact top-W -> keep
//                                         round(p * W) of them, fill the other slots with keys
//                                         outside the top-W chosen from the seed
// Every non-full policy attends through sparse attention over the keys it selected.
#pragma once
#include <cstdint>
#include <string>

#include "topk/attention.h"

namespace topk {

enum class PolicyKind : uint8_t { full, topk, window, oracle };

struct AttnPolicy {
  PolicyKind kind = PolicyKind::full;
  SelectOpts sel;          // topk: budget, sharing, forced keys; window: sel.sink, sel.window;
                           // oracle: budget (k or ratio, min_k) and sharing
  double precision = 1.0;  // oracle: fraction of the W slots taken from the exact top-W
  uint64_t seed = 0;       // oracle: seed of the filler keys (and of which top-W keys stay)
  bool is_topk() const { return kind == PolicyKind::topk; }
};

AttnPolicy parse_policy(const std::string& s);
// Prefill and training take full and topk policies only; window and oracle are decode-time
// selectors. `where` names the option or field in the error.
void check_prefill_policy(const AttnPolicy& p, const std::string& where);
std::string policy_str(const AttnPolicy& p);
const char* policy_kind_name(PolicyKind k);

}  // namespace topk
