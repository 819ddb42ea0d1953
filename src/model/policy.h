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
//   indexer | indexer:k=N                 the model's Lightning Indexer picks index_topk (or N)
//                                         keys per query, shared by every head (model/indexer.h)
//   quest:page=16,k=64 | ratio=R | pages=N   Quest: per-page key bounds -> the top pages (k / page
//                                         of them, a ratio of the pages, or N) -> their keys;
//                                         with pages=N and k=W: exact top-W inside the N pages
//   qkeys:bits=8|4,k=64 | ratio=R[,rescore=M]   keys rounded to int8 / int4 score every key ->
//                                         the top M * W candidates -> exact top-W among them
//                                         (M = 4 by default; 1: no rescoring)
// Every non-full policy attends through sparse attention over the keys it selected.
#pragma once
#include <cstdint>
#include <string>

#include "topk/attention.h"

namespace topk {

enum class PolicyKind : uint8_t { full, topk, window, oracle, indexer, quest, qkeys };
// How a topk policy spreads its budget over the query heads: the same W for every head, or
// per-head budgets from each head's attention entropy at the same mean (adapt=entropy).
enum class BudgetAdapt : uint8_t { none, entropy };

struct AttnPolicy {
  PolicyKind kind = PolicyKind::full;
  SelectOpts sel;          // topk: budget, sharing, forced keys; window: sel.sink, sel.window;
                           // oracle: budget (k or ratio, min_k) and sharing
  double precision = 1.0;  // oracle: fraction of the W slots taken from the exact top-W
  uint64_t seed = 0;       // oracle: seed of the filler keys (and of which top-W keys stay)
  int page = 0;            // quest: keys per page
  int pages = 0;           // quest: pages to select (0: from the key budget)
  int bits = 0;            // qkeys: 8 or 4
  double rescore = 4;      // qkeys: candidates per selected key (>= 1)
  BudgetAdapt adapt = BudgetAdapt::none;  // topk: per-head budgets (decode-time only)
  bool is_topk() const { return kind == PolicyKind::topk; }
  // Policies whose selection the training forward and backward support (packed sequences).
  bool trains() const {
    return kind == PolicyKind::full || kind == PolicyKind::topk || kind == PolicyKind::indexer;
  }
};

AttnPolicy parse_policy(const std::string& s);
// Prefill and training take full and topk policies only; window and oracle are decode-time
// selectors. `where` names the option or field in the error.
void check_prefill_policy(const AttnPolicy& p, const std::string& where);
std::string policy_str(const AttnPolicy& p);
const char* policy_kind_name(PolicyKind k);

}  // namespace topk
