// Built-in word lists for needle keys and generated prose.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/rng.h"

namespace topk::tasks {

extern const std::vector<std::string_view> kAdjectives;
extern const std::vector<std::string_view> kNouns;

// One sentence of generated prose from a small grammar, as words (the last ends with '.').
std::vector<std::string> prose_sentence(Rng& r);

}  // namespace topk::tasks
