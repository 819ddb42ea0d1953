#include "model/policy.h"

#include <climits>
#include <set>
#include <sstream>

#include "core/check.h"

namespace topk {

static const char* kPolicyHelp =
    "a policy is 'full', 'topk:' with k=N or ratio=R (optionally share=head|group, min_k=N, "
    "sink=N, window=N, adapt=entropy), 'window:w=N' (optionally sink=N), or 'oracle:' with k=N "
    "or ratio=R and precision=P (optionally share=, min_k=, seed=), 'indexer' (optionally k=N), "
    "'quest:' with page=N and k=N, ratio=R or pages=N (pages=N with k=W: exact top-W in those "
    "pages), or 'qkeys:' with bits=8|4 and k=N or ratio=R (optionally rescore=M, min_k=); "
    "e.g. topk:ratio=0.05,share=group";

const char* policy_kind_name(PolicyKind k) {
  switch (k) {
    case PolicyKind::full: return "full";
    case PolicyKind::topk: return "topk";
    case PolicyKind::window: return "window";
    case PolicyKind::oracle: return "oracle";
    case PolicyKind::indexer: return "indexer";
    case PolicyKind::quest: return "quest";
    case PolicyKind::qkeys: return "qkeys";
  }
  return "?";
}

AttnPolicy parse_policy(const std::string& s) {
  AttnPolicy p;
  if (s == "full") return p;
  if (s == "indexer") {
    p.kind = PolicyKind::indexer;
    return p;
  }
  size_t colon = s.find(':');
  std::string name = s.substr(0, colon);
  std::set<std::string> allowed;
  if (name == "topk") {
    p.kind = PolicyKind::topk;
    allowed = {"k", "ratio", "share", "min_k", "sink", "window", "adapt"};
  } else if (name == "window") {
    p.kind = PolicyKind::window;
    allowed = {"w", "sink"};
  } else if (name == "oracle") {
    p.kind = PolicyKind::oracle;
    allowed = {"k", "ratio", "share", "min_k", "precision", "seed"};
  } else if (name == "indexer") {
    p.kind = PolicyKind::indexer;
    allowed = {"k"};
  } else if (name == "quest") {
    p.kind = PolicyKind::quest;
    p.page = 16;
    allowed = {"page", "pages", "k", "ratio", "min_k"};
  } else if (name == "qkeys") {
    p.kind = PolicyKind::qkeys;
    p.bits = 8;
    allowed = {"bits", "k", "ratio", "min_k", "rescore"};
  } else {
    TOPK_CHECK(false, "unknown attention policy '%s'; %s", s.c_str(), kPolicyHelp);
  }
  const char* cs = s.c_str();
  TOPK_CHECK(colon != std::string::npos && colon + 1 < s.size(), "attention policy '%s' needs "
             "options after '%s:'; %s", cs, name.c_str(), kPolicyHelp);
  std::stringstream ss(s.substr(colon + 1));
  std::string item;
  bool has_precision = false, has_w = false;
  std::set<std::string> seen;
  while (std::getline(ss, item, ',')) {
    size_t eq = item.find('=');
    TOPK_CHECK(eq != std::string::npos, "bad attention policy '%s': '%s' is not key=value; %s", cs,
               item.c_str(), kPolicyHelp);
    std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    TOPK_CHECK(allowed.count(key), "bad attention policy '%s': '%s' takes no option '%s'; %s", cs,
               name.c_str(), key.c_str(), kPolicyHelp);
    TOPK_CHECK(seen.insert(key).second, "bad attention policy '%s': '%s' given twice", cs,
               key.c_str());
    const std::string field = "bad attention policy '" + s + "': " + key;
    auto integer = [&](int64_t lo) { return int(parse_int(val, field, lo, INT32_MAX)); };
    auto real = [&](const Range& r) { return parse_real(val, field, r); };
    if (key == "k") {
      p.sel.k = integer(1);
    } else if (key == "ratio") {
      p.sel.ratio = real({0, 1, true});
    } else if (key == "share") {
      TOPK_CHECK(val == "head" || val == "group", "bad attention policy '%s': share must be head "
                 "or group, got '%s'", cs, val.c_str());
      p.sel.share_group = val == "group";
    } else if (key == "min_k") {
      p.sel.min_k = integer(0);
    } else if (key == "sink") {
      p.sel.sink = integer(0);
    } else if (key == "window") {
      p.sel.window = integer(0);
    } else if (key == "w") {
      p.sel.window = integer(1);
      has_w = true;
    } else if (key == "precision") {
      p.precision = real({0, 1});
      has_precision = true;
    } else if (key == "page") {
      p.page = integer(1);
    } else if (key == "pages") {
      p.pages = integer(1);
    } else if (key == "bits") {
      p.bits = integer(1);
      TOPK_CHECK(p.bits == 8 || p.bits == 4, "bad attention policy '%s': bits must be 8 or 4, "
                 "got %s", cs, val.c_str());
    } else if (key == "rescore") {
      p.rescore = real({1, 1e6});  // candidates per selected key
    } else if (key == "adapt") {
      TOPK_CHECK(val == "entropy" || val == "none", "bad attention policy '%s': adapt must be "
                 "entropy or none, got '%s'", cs, val.c_str());
      p.adapt = val == "entropy" ? BudgetAdapt::entropy : BudgetAdapt::none;
    } else if (key == "seed") {
      p.seed = parse_u64(val, field);
    }
  }
  if (p.kind == PolicyKind::window) {
    TOPK_CHECK(has_w, "bad attention policy '%s': window needs w=N (the last N keys)", cs);
    return p;
  }
  if (p.kind == PolicyKind::indexer) return p;
  if (p.kind == PolicyKind::quest) {
    const bool budget = p.sel.k > 0 || p.sel.ratio > 0;
    TOPK_CHECK(p.pages > 0 || budget, "bad attention policy '%s': quest needs k=N, ratio=R or "
               "pages=N", cs);
    TOPK_CHECK(!(p.sel.k > 0 && p.sel.ratio > 0), "bad attention policy '%s': give one of k=N and "
               "ratio=R", cs);
    TOPK_CHECK(p.pages == 0 || p.sel.ratio == 0, "bad attention policy '%s': with pages=N the "
               "budget inside the pages is k=W (ratio=R cannot be checked against them)", cs);
    TOPK_CHECK(p.pages == 0 || int64_t(p.sel.k) <= int64_t(p.pages) * p.page, "bad attention "
               "policy '%s': k=%d is more than the %d pages of %d keys hold", cs, p.sel.k, p.pages,
               p.page);
    return p;
  }
  TOPK_CHECK((p.sel.k > 0) != (p.sel.ratio > 0), "bad attention policy '%s': give exactly one of "
             "k=N and ratio=R", cs);
  TOPK_CHECK(p.kind != PolicyKind::oracle || has_precision, "bad attention policy '%s': oracle "
             "needs precision=P in [0, 1]", cs);
  TOPK_CHECK(p.adapt == BudgetAdapt::none ||
                 (!p.sel.share_group && p.sel.sink == 0 && p.sel.window == 0),
             "bad attention policy '%s': adapt=entropy gives each query head its own budget; it "
             "takes k= or ratio= (and min_k=), not share=group, sink= or window=", cs);
  return p;
}

void check_prefill_policy(const AttnPolicy& p, const std::string& where) {
  // The rule of attend_packed (model/layer.cpp), the one whole-sequence forward.
  TOPK_CHECK(p.trains() && p.adapt == BudgetAdapt::none, "%s: '%s' is a decode-only policy; "
             "prefill and training take full, topk:... (without adapt=) or indexer (window, oracle, "
             "quest and qkeys select keys for one decoded token at a time; adapt=entropy needs "
             "the decoded token's statistics)", where.c_str(), policy_str(p).c_str());
}

std::string policy_str(const AttnPolicy& p) {
  std::ostringstream o;
  o << policy_kind_name(p.kind);
  if (p.kind == PolicyKind::full) return o.str();
  o << ":";
  if (p.kind == PolicyKind::window) {
    o << "w=" << p.sel.window;
    if (p.sel.sink) o << ",sink=" << p.sel.sink;
    return o.str();
  }
  if (p.kind == PolicyKind::indexer) {
    if (p.sel.k == 0) return "indexer";
    o << "k=" << p.sel.k;
    return o.str();
  }
  if (p.kind == PolicyKind::quest) {
    o << "page=" << p.page;
    if (p.pages) o << ",pages=" << p.pages;
    if (p.sel.k > 0) o << ",k=" << p.sel.k;
    if (p.sel.ratio > 0) o << ",ratio=" << p.sel.ratio;
    if (p.sel.min_k) o << ",min_k=" << p.sel.min_k;
    return o.str();
  }
  if (p.kind == PolicyKind::qkeys) o << "bits=" << p.bits << ",";
  if (p.sel.k > 0) o << "k=" << p.sel.k;
  else o << "ratio=" << p.sel.ratio;
  if (p.sel.share_group) o << ",share=group";
  if (p.sel.min_k) o << ",min_k=" << p.sel.min_k;
  if (p.kind == PolicyKind::oracle) {
    o << ",precision=" << p.precision;
    if (p.seed) o << ",seed=" << p.seed;
    return o.str();
  }
  if (p.kind == PolicyKind::qkeys) {
    if (p.rescore != 4) o << ",rescore=" << p.rescore;
    return o.str();
  }
  if (p.sel.sink) o << ",sink=" << p.sel.sink;
  if (p.sel.window) o << ",window=" << p.sel.window;
  if (p.adapt == BudgetAdapt::entropy) o << ",adapt=entropy";
  return o.str();
}

}  // namespace topk
