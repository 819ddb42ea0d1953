// libFuzzer target: Hugging Face tokenizer.json (src/model/bpe_load.cpp, bpe.cpp). The input's
// first line is a text to encode, the rest the tokenizer.json. A bad file must raise
// topk::Error; a tokenizer it accepts must encode the text (special tokens matched and not) to
// ids below its size with byte offsets that never go back or past the text, and decode them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "model/bpe.h"
#include "topk/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  const std::string_view text = nl == std::string_view::npos ? std::string_view() : in.substr(0, nl);
  const std::string json(nl == std::string_view::npos ? in : in.substr(nl + 1));
  topk::Bpe b;
  try {
    b = topk::bpe_from_json(json, "fuzz tokenizer.json");
  } catch (const topk::Error&) {
    return 0;
  }
  for (bool special : {false, true}) {
    std::vector<int32_t> ids;
    std::vector<int64_t> starts;
    topk::bpe_encode(b, text, special, ids, &starts);
    if (starts.size() != ids.size()) std::abort();
    for (size_t i = 0; i < ids.size(); i++) {
      if (ids[i] < 0 || ids[i] >= b.size) std::abort();
      if (starts[i] < 0 || starts[i] > int64_t(text.size())) std::abort();
      if (i > 0 && starts[i] < starts[i - 1]) std::abort();
    }
    topk::bpe_decode(b, ids.data(), ids.size(), special);
  }
  return 0;
}
