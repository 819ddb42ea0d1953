// libFuzzer target: the safetensors reader (src/core/safetensors.cpp) on arbitrary bytes. A
// malformed file must raise topk::Error; anything else (a crash, a sanitizer report, another
// exception) is a bug. Every float tensor the reader accepts is also converted to f32.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/safetensors.h"
#include "topk/core.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    topk::SafeTensors st = topk::st_parse(data, size, "fuzz.safetensors");
    std::vector<float> f;
    for (const topk::StTensor& t : st.tensors) {
      if (t.dtype == topk::DType::i32) continue;
      f.resize(size_t(t.numel()));
      topk::st_to_f32(t, f.data(), t.numel());
    }
  } catch (const topk::Error&) {
  }
  return 0;
}
