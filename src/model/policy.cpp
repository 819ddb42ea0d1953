#include "model/policy.h"

#include <climits>
#include <set>
#include <sstream>

#include "core/check.h"

namespace topk {

static const char* kPolicyHelp =
    "a policy is 'full', 'topk:' with k=N or ratio=R (optionally share=head|group, min_k=N, "
    "sink=N, window=N), 'window:w=N' (optionally sink=N), or 'oracle:' with k=N or ratio=R and "
    "precision=P (optionally share=, min_k=, seed=); e.g. topk:ratio=0.05,share=group";

const char* policy_kind_name(PolicyKind k) {
  switch (k) {
    case PolicyKind::full: return "full";
    case PolicyKind::topk: return "topk";
    case PolicyKind::window: return "window";
    case PolicyKind::oracle: return "oracle";
  }
  return "?";
}

AttnPolicy parse_policy(const std::string& s) {
  AttnPolicy p;
  if (s == "full") return p;
  size_t colon = s.find(':');
  std::string name = s.substr(0, colon);
  std::set<std::string> allowed;
  if (name == "topk") {
    p.kind = PolicyKind::topk;
    allowed = {"k", "ratio", "share", "min_k", "sink", "window"};
  } else if (name == "window") {
    p.kind = PolicyKind::window;
    allowed = {"w", "sink"};
  } else if (name == "oracle") {
    p.kind = PolicyKind::oracle;
    allowed = {"k", "ratio", "share", "min_k", "precision", "seed"};
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
    } else if (key == "seed") {
      p.seed = parse_u64(val, field);
    }
  }
  if (p.kind == PolicyKind::window) {
    TOPK_CHECK(has_w, "bad attention policy '%s': window needs w=N (the last N keys)", cs);
    return p;
  }
  TOPK_CHECK((p.sel.k > 0) != (p.sel.ratio > 0), "bad attention policy '%s': give exactly one of "
             "k=N and ratio=R", cs);
  TOPK_CHECK(p.kind != PolicyKind::oracle || has_precision, "bad attention policy '%s': oracle "
             "needs precision=P in [0, 1]", cs);
  return p;
}

void check_prefill_policy(const AttnPolicy& p, const std::string& where) {
  TOPK_CHECK(p.kind == PolicyKind::full || p.kind == PolicyKind::topk, "%s: '%s' is a decode-only "
             "policy; prefill and training take full or topk:... (window and oracle select keys for "
             "one decoded token at a time)", where.c_str(), policy_str(p).c_str());
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
  if (p.sel.k > 0) o << "k=" << p.sel.k;
  else o << "ratio=" << p.sel.ratio;
  if (p.sel.share_group) o << ",share=group";
  if (p.sel.min_k) o << ",min_k=" << p.sel.min_k;
  if (p.kind == PolicyKind::oracle) {
    o << ",precision=" << p.precision;
    if (p.seed) o << ",seed=" << p.seed;
    return o.str();
  }
  if (p.sel.sink) o << ",sink=" << p.sel.sink;
  if (p.sel.window) o << ",window=" << p.sel.window;
  return o.str();
}

}  // namespace topk
