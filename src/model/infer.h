// Incremental inference of one sequence with a KV cache: prefill a chunk of tokens, then decode
// one token at a time. Each call may use its own attention policy (full prefill, top-k decode).
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "model/attend.h"
#include "model/model.h"
#include "model/policy.h"

namespace topk {

struct KVCache {
  int max_len = 0;
  int len = 0;                              // tokens cached so far
  std::vector<std::vector<float>> k, v;     // [L] x [max_len, Hkv, D], RoPE applied to k
};

KVCache kv_cache_create(const ModelConfig& c, int max_len);

// Runs tokens[0..T) at positions cache.len .. cache.len+T-1, appends their keys and values and
// writes logits [T, V] (only the last row, [1, V], when last_only). stats (optional): per layer,
// the attention statistics of the last token (model/attend.h).
void model_step(const Model& m, KVCache& cache, const int* tokens, int T, const AttnPolicy& pol,
                std::vector<float>& logits, bool last_only,
                std::vector<AttnStats>* stats = nullptr);

struct SampleOpts {
  float temperature = 0;  // 0: greedy (ties: lowest id)
  int top_k = 0;          // 0: all
  uint64_t seed = 0;
};
struct Sampler {
  SampleOpts o;
  Rng rng;
};
Sampler sampler_create(const SampleOpts& o);
int sample(Sampler& s, const float* logits, int V);

}  // namespace topk
