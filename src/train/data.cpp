#include "train/data.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/check.h"
#include "model/tokenizer.h"
#include "tasks/tasks.h"

namespace topk {

static bool is_suite_task(const TaskOpts& t) { return tasks::find_task(t.name) != nullptr; }

// Limits that keep an example's generation and a training step finite: a copy or recall
// example of max_len has ~2 * max_len (copy) or 4 * max_len (recall) tokens.
constexpr int kMaxCopyLen = 4096, kMaxTaskLength = 1 << 20;

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
  const char* n = t.name.c_str();
  if (is_suite_task(t)) {
    TOPK_CHECK(t.length != 0, "task %s: set \"length\" (target tokens per example, e.g. 256)", n);
    TOPK_CHECK(t.length > 0 && t.length <= kMaxTaskLength, "task %s: \"length\" (target tokens per "
               "example) must be in [1, %d], got %d", n, kMaxTaskLength, t.length);
    TOPK_CHECK(t.loss == "answer" || t.loss == "question" || t.loss == "all", "task %s: loss "
               "must be answer, question or all, got '%s'", n, t.loss.c_str());
    TOPK_CHECK(t.min_length >= 0 && t.min_length <= t.length, "task %s: min_length must be in "
               "[0, length = %d], got %d", n, t.length, t.min_length);
    tasks::parse_mode(t.mode);
    return;
  }
  TOPK_CHECK(t.name == "copy" || t.name == "recall", "task '%s' unknown (copy, recall, mix or a "
             "task of topk data --list)", n);
  TOPK_CHECK(t.min_len >= 1 && t.max_len >= t.min_len && t.max_len <= kMaxCopyLen, "task %s: need "
             "1 <= min_len <= max_len <= %d, got %d and %d", n, kMaxCopyLen, t.min_len, t.max_len);
  TOPK_CHECK(t.alphabet >= 2 && t.alphabet <= 26, "task %s: alphabet must be in [2, 26], got %d",
             n, t.alphabet);
  TOPK_CHECK(t.name != "recall" || t.max_len <= t.alphabet, "task recall: %d pairs need distinct "
             "keys, but the alphabet has only %d", t.max_len, t.alphabet);
}

static void check_lengths(const TaskOpts& t, const tasks::Tokenizer& tok) {
  if (t.name == "mix") {
    for (const TaskOpts& item : t.mix) check_lengths(item, tok);
    return;
  }
  if (!is_suite_task(t)) return;
  // Nine lengths evenly over the range, ends included: a task's fit need not grow with the
  // length (a benchmark's rule may switch to more content at a round length).
  const int lo = t.min_length > 0 ? t.min_length : t.length, hi = t.length;
  for (int i = 0; i <= 8; i++) {
    tasks::Config cfg;
    cfg.length = lo + int64_t(hi - lo) * i / 8;
    cfg.mode = tasks::parse_mode(t.mode);
    tasks::generate(t.name, cfg, tok);  // its error names the task and the minimum
  }
}

void check_task_lengths(const TaskOpts& t, const Tokenizer& tok) {
  check_lengths(t, task_tokenizer(tok));
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

// One task object. A mix item starts from the mix's options (length, min_length, mode, loss, ...)
// and takes its own "weight".
static TaskOpts task_from_json(const json& j, const std::string& what, const TaskOpts& base,
                               bool item) {
  TOPK_CHECK(j.is_object(), "%s: %s must be an object, got %s", what.c_str(),
             item ? "each mix item" : "task", j.dump().c_str());
  static const std::set<std::string> keys = {"name", "min_len", "max_len", "alphabet", "length",
                                             "min_length", "loss", "mode"};
  for (auto it = j.begin(); it != j.end(); ++it)
    TOPK_CHECK(keys.count(it.key()) || it.key() == (item ? "weight" : "mix"), "%s: unknown %s "
               "key '%s'", what.c_str(), item ? "mix item" : "task", it.key().c_str());
  TaskOpts t = base;
  t.mix.clear(), t.weights.clear();
  if (item) t.name = "";
  const std::string w = what + (item ? " mix item" : " task");
  t.name = json_string(j, "name", w, t.name);
  TOPK_CHECK(!item || !t.name.empty(), "%s: each mix item needs a \"name\"", what.c_str());
  t.min_len = int(json_int(j, "min_len", w, 1, kMaxCopyLen, t.min_len));
  t.max_len = int(json_int(j, "max_len", w, 1, kMaxCopyLen, t.max_len));
  t.alphabet = int(json_int(j, "alphabet", w, 2, 26, t.alphabet));
  t.length = int(json_int(j, "length", w, 1, kMaxTaskLength, t.length));
  t.min_length = int(json_int(j, "min_length", w, 0, kMaxTaskLength, t.min_length));
  t.loss = json_string(j, "loss", w, t.loss);
  t.mode = json_string(j, "mode", w, t.mode);
  if (j.contains("mix")) {
    TOPK_CHECK(t.name == "mix", "%s: \"mix\" needs \"name\": \"mix\"", what.c_str());
    const json& items = j["mix"];
    TOPK_CHECK(items.is_array() && !items.empty(), "%s: mix must be a non-empty list of task "
               "objects", what.c_str());
    for (const json& it : items) {
      t.mix.push_back(task_from_json(it, what, t, true));
      t.weights.push_back(json_real(it, "weight", w, {0, 1e9}, 1.0));
    }
  }
  return t;
}

TaskOpts task_from_json(const json& j, const std::string& what) {
  TaskOpts t = task_from_json(j, what, TaskOpts{}, false);
  validate_task(t);
  return t;
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
