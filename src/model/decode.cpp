#include "model/decode.h"

#include <algorithm>

namespace topk {

KVCache prefill_prompts(const Model& m, const std::vector<std::vector<int>>& prompts, int max_new,
                        const AttnPolicy& pol, StepScratch& s, const CacheOpts& cache) {
  int longest = 0;
  std::vector<std::vector<int>> heads;
  for (const auto& p : prompts) {
    TOPK_CHECK(p.size() >= 2, "prefill: a prompt needs at least 2 tokens, got %zu", p.size());
    longest = std::max(longest, int(p.size()));
    heads.emplace_back(p.begin(), p.end() - 1);
  }
  KVCache kc = kv_cache_create(m, int(prompts.size()), longest + std::max(max_new, 1), cache);
  std::vector<float> logits;
  StepOpts o;
  o.scratch = &s;
  model_step(m, kc, heads, pol, logits, o);
  return kc;
}

void greedy_decode(const Model& m, KVCache& kc, const std::vector<int>& last_tokens,
                   const std::vector<int>& max_new, const std::vector<int>& stop_ids,
                   const AttnPolicy& pol,
                   bool collect_stats, const OnToken& on_token, StepScratch& s) {
  const int B = kc.batch, V = m.cfg.vocab;
  TOPK_CHECK(int(last_tokens.size()) == B && int(max_new.size()) == B,
             "greedy_decode: %zu tokens and %zu budgets for %d sequences", last_tokens.size(),
             max_new.size(), B);
  std::vector<std::vector<int>> in(static_cast<size_t>(B));
  std::vector<int> made(size_t(B), 0);
  for (int b = 0; b < B; b++)
    if (max_new[size_t(b)] > 0 && kc.len[size_t(b)] < kc.max_len)
      in[size_t(b)] = {last_tokens[size_t(b)]};
  std::vector<float> logits;
  std::vector<std::vector<AttnStats>> stats;
  StepOpts o;
  o.scratch = &s;
  o.stats = collect_stats ? &stats : nullptr;
  while (std::any_of(in.begin(), in.end(), [](const auto& v) { return !v.empty(); })) {
    model_step(m, kc, in, pol, logits, o);
    for (int b = 0; b < B; b++) {
      if (in[size_t(b)].empty()) continue;
      const float* row = logits.data() + size_t(b) * V;
      const int tok = int(std::max_element(row, row + V) - row);
      made[size_t(b)]++;
      const bool go = on_token(b, tok, collect_stats ? &stats[size_t(b)] : nullptr);
      const bool stop = std::find(stop_ids.begin(), stop_ids.end(), tok) != stop_ids.end();
      if (!go || stop || made[size_t(b)] >= max_new[size_t(b)] ||
          kc.len[size_t(b)] >= kc.max_len)
        in[size_t(b)].clear();
      else
        in[size_t(b)] = {tok};
    }
  }
}

}  // namespace topk
