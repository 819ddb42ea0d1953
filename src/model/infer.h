// Incremental inference of a batch of sequences with a KV cache on the model's device: prefill
// chunks of tokens, then decode one token per sequence per step. Sequences may hold different
// lengths (ragged); each call may use its own attention policy (full prefill, top-k decode).
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "model/attend.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/policy.h"

namespace topk {

// Keys (RoPE applied) and values of every layer, preallocated for `max_len` tokens of each of
// `batch` sequences: f32 on the CPU, bf16 on CUDA. The indexer's keys in the same dtype, or as
// FP8 E4M3 with a scale per key (indexer_quantize_keys, docs/semantics.md): half the bytes of
// bf16, a quarter of f32.
struct KVCache {
  int batch = 0, max_len = 0;
  std::vector<Buffer> k, v;  // [L] x [batch, max_len, Hkv, D]
  std::vector<Buffer> ki;    // [L] x [batch, max_len, 1, dI]: the indexer's keys (models with one)
  std::vector<Buffer> ki_scale;  // [L] x [batch, max_len] f32 when ki is f8e4m3, else empty
  std::vector<int32_t> len;  // [batch] tokens cached per sequence
};

struct CacheOpts {
  bool indexer_fp8 = false;  // the indexer's keys as FP8 E4M3 with per-key scales
};

// Raises, before allocating, when the cache would not fit (the sizes name the cause).
KVCache kv_cache_create(const Model& m, int batch, int max_len, const CacheOpts& o = {});
// A copy of src's contents and lengths (same shapes): one prefill shared by several decodes.
void kv_cache_copy(KVCache& dst, const KVCache& src);
int64_t kv_cache_bytes(const ModelConfig& c, int batch, int max_len, DType dtype,
                       const CacheOpts& o = {});

// Reusable buffers of model_step.
struct StepScratch {
  Buffer x, out, tokens, pos, rows, last, xl, xn, rstd, logits;
  LayerActs acts;
};

struct StepOpts {
  bool all_logits = false;  // logits of every new token, not only each sequence's last
  std::vector<std::vector<AttnStats>>* stats = nullptr;  // [B][L] (decode steps only)
  StepScratch* scratch = nullptr;  // reuse buffers across calls (recommended in loops)
};

// Runs tokens[b] (may be empty) for each sequence b of the cache at positions len[b] ..,
// appends their keys and values, and writes logits to the host: [B, V] (each sequence's last
// new token; rows of sequences without tokens are left as they are) or, with all_logits,
// [sum_b |tokens[b]|, V] in sequence order.
void model_step(const Model& m, KVCache& cache, const std::vector<std::vector<int>>& tokens,
                const AttnPolicy& pol, std::vector<float>& logits, const StepOpts& opts = {});

// One sequence (cache batch 1): tokens[0..T) at positions cache.len[0] ..; logits [T, V], or
// only the last row [1, V] when last_only. stats (optional): the last token's statistics per
// layer.
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
