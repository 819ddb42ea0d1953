// libFuzzer target: config.json (src/model/config.cpp). A bad file must raise topk::Error; a
// config it accepts must count its parameters without overflow and survive a write + read
// round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "model/config.h"
#include "topk/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  topk::ModelConfig c;
  try {
    c = topk::config_from_json_text(std::string(reinterpret_cast<const char*>(data), size),
                                    "fuzz config.json");
  } catch (const topk::Error&) {
    return 0;
  }
  if (topk::config_param_count(c) <= 0) std::abort();
  std::string text = topk::config_to_json_text(c);  // throws nothing for a valid config
  if (topk::config_to_json_text(topk::config_from_json_text(text, "round trip")) != text)
    std::abort();
  return 0;
}
