// Greedy decoding of a batch of prompts under the evaluation protocol (docs/eval.md): all
// prompt tokens but the last are prefilled, then the last prompt token and every generated token
// run as decode steps under the decode policy. The one decode loop of `topk eval` and of the
// held-out accuracy `topk train` reports.
#pragma once
#include <functional>
#include <vector>

#include "model/infer.h"

namespace topk {

// A cache holding each prompt but its last token, prefilled under `pol`, with room for
// max_new more tokens per sequence. Prompts need at least 2 tokens.
KVCache prefill_prompts(const Model& m, const std::vector<std::vector<int>>& prompts, int max_new,
                        const AttnPolicy& pol, StepScratch& s, const CacheOpts& cache = {});

// Called with each decode step's output token for sequence b, and the step's per-layer
// statistics when they are collected; returns false to stop decoding that sequence.
using OnToken = std::function<bool(int b, int token, const std::vector<AttnStats>* stats)>;

// Decodes greedily (ties: lowest id) from a cache that prefill_prompts filled, feeding
// last_tokens[b] first. Sequence b stops after on_token returns false, at one of stop_ids (its
// step is reported), after max_new[b] tokens, or when its cache is full.
void greedy_decode(const Model& m, KVCache& kc, const std::vector<int>& last_tokens,
                   const std::vector<int>& max_new, const std::vector<int>& stop_ids,
                   const AttnPolicy& pol,
                   bool collect_stats, const OnToken& on_token, StepScratch& s);

}  // namespace topk
