#include "train/data.h"

#include <algorithm>
#include <cmath>

#include "model/tokenizer.h"
#include "tasks/tasks.h"

namespace topk {

static bool is_suite_task(const TaskOpts& t) { return tasks::find_task(t.name) != nullptr; }

void validate_task(const TaskOpts& t) {
  if (t.name == "mix") {
    TOPK_CHECK(!t.mix.empty(), "task mix: give \"mix\", a list of tasks with weights");
    TOPK_CHECK(t.weights.size() == t.mix.size(), "task mix: %zu tasks but %zu weights",
               t.mix.size(), t.weights.size());
    double sum = 0;
    for (size_t i = 0; i < t.mix.size(); i++) {
      TOPK_CHECK(t.mix[i].name != "mix", "task mix: item %zu is itself a mix", i);
      TOPK_CHECK(t.weights[i] >= 0 && std::isfinite(t.weights[i]), "task mix: the weight of %s "
                 "must be a finite number >= 0, got %g", t.mix[i].name.c_str(), t.weights[i]);
      sum += t.weights[i];
      validate_task(t.mix[i]);
    }
    TOPK_CHECK(sum > 0, "task mix: the weights sum to 0");
    return;
  }
  if (is_suite_task(t)) {
    TOPK_CHECK(t.length > 0, "task %s: set \"length\" (target tokens per example, e.g. 256)",
               t.name.c_str());
    TOPK_CHECK(t.loss == "answer" || t.loss == "question" || t.loss == "all", "task %s: loss "
               "must be answer, question or all, got '%s'", t.name.c_str(), t.loss.c_str());
    TOPK_CHECK(t.min_length <= t.length, "task %s: min_length %d exceeds length %d",
               t.name.c_str(), t.min_length, t.length);
    tasks::parse_mode(t.mode);
    return;
  }
  TOPK_CHECK(t.name == "copy" || t.name == "recall", "task '%s' unknown (copy, recall, mix or a "
             "task of topk data --list)", t.name.c_str());
  TOPK_CHECK(t.min_len >= 1 && t.max_len >= t.min_len, "task %s: need 1 <= min_len <= max_len, got "
             "%d and %d", t.name.c_str(), t.min_len, t.max_len);
  TOPK_CHECK(t.alphabet >= 2 && t.alphabet <= 26, "task %s: alphabet must be in [2, 26], got %d",
             t.name.c_str(), t.alphabet);
  TOPK_CHECK(t.name != "recall" || t.max_len <= t.alphabet, "task recall: %d pairs need distinct "
             "keys, but the alphabet has only %d", t.max_len, t.alphabet);
}

size_t pick_mix_item(const TaskOpts& t, Rng& rng) {
  double sum = 0;
  for (double w : t.weights) sum += w;
  const double u = rng.uniform() * sum;
  double acc = 0;
  size_t last = 0;
  for (size_t i = 0; i < t.weights.size(); i++) {
    if (t.weights[i] <= 0) continue;
    acc += t.weights[i];
    last = i;
    if (u < acc) return i;
  }
  return last;  // u rounded up to the sum
}

Example make_example(const TaskOpts& t, const Tokenizer& tok, Rng& rng) {
  if (t.name == "mix") {
    const size_t i = pick_mix_item(t, rng);
    Example e = make_example(t.mix[i], tok, rng);
    e.task = int(i);
    return e;
  }
  Example e;
  TOPK_CHECK(tok.eos >= 0, "task %s: the model's tokenizer (%s) has no end-of-text id", t.name.c_str(),
             tok.name.c_str());
  if (is_suite_task(t)) {
    tasks::Config cfg;
    cfg.length = t.length;
    if (t.min_length > 0) cfg.length = t.min_length + int64_t(rng.below(uint64_t(t.length - t.min_length + 1)));
    cfg.seed = rng.next();
    cfg.mode = tasks::parse_mode(t.mode);
    tasks::Example x = tasks::generate(t.name, cfg, task_tokenizer(tok));
    e.tokens = encode(tok, x.prompt + x.answer_prefix, true);
    e.loss_from = int(e.tokens.size()) - 1;
    if (t.loss == "all") e.loss_from = 0;
    if (t.loss == "question")
      e.loss_from = int(encode(tok, x.prompt.substr(0, size_t(x.context_end)), true).size()) - 1;
    e.answer_from = int(e.tokens.size());
    std::vector<int> ans = encode(tok, x.target, false);
    e.tokens.insert(e.tokens.end(), ans.begin(), ans.end());
    e.tokens.push_back(tok.eos);
    return e;
  }
  TOPK_CHECK(tok.kind == Tokenizer::Kind::bytes, "task %s is defined over bytes; it needs a model "
             "with topk's byte tokenizer, not %s", t.name.c_str(), tok.name.c_str());
  e.tokens.push_back(tok.bos);
  int n = t.min_len + int(rng.below(uint64_t(t.max_len - t.min_len + 1)));
  if (t.name == "copy") {
    std::vector<int> s;
    for (int i = 0; i < n; i++) s.push_back('a' + int(rng.below(uint64_t(t.alphabet))));
    e.tokens.insert(e.tokens.end(), s.begin(), s.end());
    e.loss_from = int(e.tokens.size());  // predicting after '|'
    e.tokens.push_back('|');
    e.answer_from = int(e.tokens.size());
    e.tokens.insert(e.tokens.end(), s.begin(), s.end());
  } else {
    std::vector<int> keys(size_t(t.alphabet));
    for (int i = 0; i < t.alphabet; i++) keys[size_t(i)] = 'a' + i;
    for (int i = 0; i < n; i++) std::swap(keys[size_t(i)], keys[size_t(i) + rng.below(uint64_t(t.alphabet - i))]);
    std::vector<int> vals;
    for (int i = 0; i < n; i++) {
      vals.push_back('0' + int(rng.below(10)));
      e.tokens.insert(e.tokens.end(), {keys[size_t(i)], '=', vals.back(), ' '});
    }
    int q = int(rng.below(uint64_t(n)));
    e.tokens.insert(e.tokens.end(), {'?', keys[size_t(q)], ':'});
    e.loss_from = int(e.tokens.size()) - 1;
    e.answer_from = int(e.tokens.size());
    e.tokens.push_back(vals[size_t(q)]);
  }
  e.tokens.push_back(tok.eos);
  return e;
}

Batch make_task_batch(const TaskOpts& t, const Tokenizer& tok, uint64_t seed, int64_t step,
                      int micro, int tokens) {
  validate_task(t);
  Rng rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(step) * 1000003ull + uint64_t(micro) + 1);
  std::vector<std::vector<int>> seqs;
  std::vector<int> from;
  int total = 0;
  for (;;) {
    Example e = make_example(t, tok, rng);
    if (!seqs.empty() && total + int(e.tokens.size()) > tokens) break;
    total += int(e.tokens.size());
    seqs.push_back(std::move(e.tokens));
    from.push_back(e.loss_from);
  }
  return make_batch(seqs, from);
}

}  // namespace topk
