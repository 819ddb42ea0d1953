// Attention policy of one phase (prefill, decode, training):
//   full                                  full attention
//   topk:k=64 | topk:ratio=0.05,share=group (+ min_k=, sink=, window=)   exact top-k
//   topk:ratio=0.05,adapt=entropy         entropy-adaptive budget (decode and cache prefill):
//                                         per query, the heads share H * W keys in proportion
//                                         to their attention entropy (model/attend.h,
//                                         entropy_budgets; docs/eval.md)
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
// How a topk policy spreads its budget over the query heads: the same W for every head, or
// per-head budgets from each head's attention entropy at the same mean (adapt=entropy).
enum class BudgetAdapt : uint8_t { none, entropy };

struct AttnPolicy {
  PolicyKind kind = PolicyKind::full;
  SelectOpts sel;          // topk: budget, sharing, forced keys; window: sel.sink, sel.window;
                           // oracle: budget (k or ratio, min_k) and sharing
  double precision = 1.0;  // oracle: fraction of the W slots taken from the exact top-W
  uint64_t seed = 0;       // oracle: seed of the filler keys (and of which top-W keys stay)
  BudgetAdapt adapt = BudgetAdapt::none;  // topk: per-head budgets (decode-time only)
  bool is_topk() const { return kind == PolicyKind::topk; }
};

AttnPolicy parse_policy(const std::string& s);
std::string policy_str(const AttnPolicy& p);
const char* policy_kind_name(PolicyKind k);

}  // namespace topk
