#include "train/evaluate.h"

#include "model/infer.h"

namespace topk {

EvalResult task_accuracy(const Model& m, const TaskOpts& task, int examples, uint64_t seed,
                         const AttnPolicy& prefill, const AttnPolicy& decode) {
  validate_task(task);
  TOPK_CHECK(m.cfg.tokenizer.present, "task_accuracy: the model has no byte tokenizer");
  Rng rng(seed ^ 0x5EEDE7A1ull);
  Sampler greedy = sampler_create({});
  EvalResult r;
  std::vector<float> logits;
  for (int i = 0; i < examples; i++) {
    Example e = make_example(task, m.cfg.tokenizer, rng);
    int n_answer = int(e.tokens.size()) - e.answer_from;  // answer tokens, EOS included
    KVCache kc = kv_cache_create(m.cfg, int(e.tokens.size()));
    model_step(m, kc, e.tokens.data(), e.answer_from, prefill, logits, true);
    bool ok = true;
    for (int j = 0; j < n_answer && ok; j++) {
      int t = sample(greedy, logits.data(), m.cfg.vocab);
      ok = t == e.tokens[size_t(e.answer_from + j)];
      if (ok && j + 1 < n_answer) model_step(m, kc, &t, 1, decode, logits, true);
    }
    r.examples++;
    r.exact += ok;
  }
  return r;
}

}  // namespace topk
