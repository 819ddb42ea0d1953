// RoPE inverse frequencies [D/2] as Hugging Face computes them: rope_theta, and the llama3
// scaling of low frequencies when the config asks for it.
#pragma once
#include <vector>

#include "model/config.h"

namespace topk {

std::vector<float> rope_inv_freq(const ModelConfig& c);

// The Lightning Indexer's RoPE [dI/2]: the rotate_half pairs (i, i + dI/2) with i < R/2
// (R = index_rope_head_dim) turn with the frequencies of an R-dim rotary embedding (theta and
// llama3 scaling of the model); the pairs i >= R/2 have frequency 0 and do not turn.
std::vector<float> index_inv_freq(const ModelConfig& c);

}  // namespace topk
