#include "model/policy.h"

#include <cstdlib>
#include <sstream>

namespace topk {

static const char* kPolicyHelp =
    "attention policy must be 'full' or 'topk:' followed by k=N or ratio=R, optionally "
    "share=head|group, min_k=N, sink=N, window=N (e.g. topk:ratio=0.05,share=group)";

AttnPolicy parse_policy(const std::string& s) {
  AttnPolicy p;
  if (s == "full") return p;
  TOPK_CHECK(s.rfind("topk:", 0) == 0, "bad attention policy '%s': %s", s.c_str(), kPolicyHelp);
  p.topk = true;
  std::stringstream ss(s.substr(5));
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t eq = item.find('=');
    TOPK_CHECK(eq != std::string::npos, "bad attention policy '%s': '%s' is not key=value; %s",
               s.c_str(), item.c_str(), kPolicyHelp);
    std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    char* end = nullptr;
    auto integer = [&]() {
      long v = std::strtol(val.c_str(), &end, 10);
      TOPK_CHECK(!val.empty() && *end == 0 && v >= 0 && v < (1l << 31),
                 "bad attention policy '%s': %s=%s must be a non-negative integer", s.c_str(),
                 key.c_str(), val.c_str());
      return int(v);
    };
    if (key == "k") {
      p.sel.k = integer();
    } else if (key == "ratio") {
      p.sel.ratio = std::strtod(val.c_str(), &end);
      TOPK_CHECK(!val.empty() && *end == 0 && p.sel.ratio > 0 && p.sel.ratio <= 1,
                 "bad attention policy '%s': ratio must be in (0, 1], got %s", s.c_str(),
                 val.c_str());
    } else if (key == "share") {
      TOPK_CHECK(val == "head" || val == "group", "bad attention policy '%s': share must be head "
                 "or group, got '%s'", s.c_str(), val.c_str());
      p.sel.share_group = val == "group";
    } else if (key == "min_k") {
      p.sel.min_k = integer();
    } else if (key == "sink") {
      p.sel.sink = integer();
    } else if (key == "window") {
      p.sel.window = integer();
    } else {
      TOPK_CHECK(false, "bad attention policy '%s': unknown key '%s'; %s", s.c_str(), key.c_str(),
                 kPolicyHelp);
    }
  }
  TOPK_CHECK((p.sel.k > 0) != (p.sel.ratio > 0), "bad attention policy '%s': give exactly one of "
             "k (> 0) and ratio", s.c_str());
  return p;
}

std::string policy_str(const AttnPolicy& p) {
  if (!p.topk) return "full";
  std::ostringstream o;
  o << "topk:";
  if (p.sel.k > 0) o << "k=" << p.sel.k;
  else o << "ratio=" << p.sel.ratio;
  if (p.sel.share_group) o << ",share=group";
  if (p.sel.min_k) o << ",min_k=" << p.sel.min_k;
  if (p.sel.sink) o << ",sink=" << p.sel.sink;
  if (p.sel.window) o << ",window=" << p.sel.window;
  return o.str();
}

}  // namespace topk
