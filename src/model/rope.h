// RoPE inverse frequencies [D/2] as Hugging Face computes them: rope_theta, and the llama3
// scaling of low frequencies when the config asks for it.
#pragma once
#include <vector>

#include "model/config.h"

namespace topk {

std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace topk
