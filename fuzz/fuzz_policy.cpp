// libFuzzer target: attention policy strings (src/model/policy.cpp). A bad string must raise
// topk::Error; a policy it accepts must print to a string that parses back to the same policy.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/policy.h"
#include "topk/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  topk::AttnPolicy p;
  try {
    p = topk::parse_policy(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const topk::Error&) {
    return 0;
  }
  std::string s = topk::policy_str(p);
  if (topk::policy_str(topk::parse_policy(s)) != s) std::abort();
  try {
    topk::check_prefill_policy(p, "fuzz");
  } catch (const topk::Error&) {
  }
  return 0;
}
