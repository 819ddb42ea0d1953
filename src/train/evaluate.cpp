#include "train/evaluate.h"

#include <algorithm>

#include "model/decode.h"

namespace topk {

EvalResult task_accuracy(const Model& m, const TaskOpts& task, int examples, uint64_t seed,
                         const AttnPolicy& prefill, const AttnPolicy& decode, int batch) {
  validate_task(task);
  TOPK_CHECK(m.tok.has_text(), "task_accuracy: the model has no tokenizer");
  TOPK_CHECK(batch > 0, "task_accuracy: batch must be positive, got %d", batch);
  Rng rng(seed ^ 0x5EEDE7A1ull);
  std::vector<Example> ex;
  for (int i = 0; i < examples; i++) ex.push_back(make_example(task, m.tok, rng));
  EvalResult r;
  StepScratch s;
  for (int i0 = 0; i0 < examples; i0 += batch) {
    const int B = std::min(batch, examples - i0);
    std::vector<std::vector<int>> prompts;
    std::vector<int> last, budget;
    for (int b = 0; b < B; b++) {
      const Example& e = ex[size_t(i0 + b)];
      prompts.emplace_back(e.tokens.begin(), e.tokens.begin() + e.answer_from);
      last.push_back(e.tokens[size_t(e.answer_from - 1)]);
      budget.push_back(int(e.tokens.size()) - e.answer_from);  // answer tokens, EOS included
    }
    const int most = *std::max_element(budget.begin(), budget.end());
    KVCache kc = prefill_prompts(m, prompts, most, prefill, s);
    std::vector<int> matched(size_t(B), 0);
    std::vector<bool> ok(size_t(B), true);
    greedy_decode(m, kc, last, budget, {m.tok.eos}, decode, false,
                  [&](int b, int tok, const std::vector<AttnStats>*) -> bool {
                    const Example& e = ex[size_t(i0 + b)];
                    const int j = matched[size_t(b)];
                    if (tok != e.tokens[size_t(e.answer_from + j)]) {
                      ok[size_t(b)] = false;
                      return false;
                    }
                    matched[size_t(b)]++;
                    return true;
                  },
                  s);
    for (int b = 0; b < B; b++) {
      r.examples++;
      r.exact += ok[size_t(b)] && matched[size_t(b)] == budget[size_t(b)];
    }
  }
  return r;
}

}  // namespace topk
