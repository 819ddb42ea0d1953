// libFuzzer target: the JSON run file of `topk train` (train_config_from_json_text, with the
// model's config.json fields and the task). A bad run file must raise topk::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "topk/core.h"
#include "train/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    topk::train_config_from_json_text(std::string(reinterpret_cast<const char*>(data), size),
                                      "fuzz run.json");
  } catch (const topk::Error&) {
  }
  return 0;
}
