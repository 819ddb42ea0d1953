// RULER variable tracking: one chain of 4 hops in the noise haystack, after one worked example.
#include <algorithm>

#include "tasks/internal.h"
#include "topk/core.h"

namespace topk::tasks {

namespace {

constexpr int kHops = 4;
constexpr int64_t kRulerBudget = 30;        // RULER's tokens_to_generate for variable_tracking
constexpr int64_t kWorkedExampleTokens = 500;  // RULER fits its worked example to 500 tokens

const char* const kHead =
    "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n";

std::string vt_question(const std::string& context, const std::string& value) {
  return kHead + context + "\nQuestion: Find all variables that are assigned the value " + value +
         " in the text above.";
}

// RULER's current answer prefix (its 2024 release spelled "assgined"; fixed in May 2025).
std::string vt_prefix(const std::string& value) {
  return " Answer: According to the chain(s) of variable assignment in the text above, " +
         std::to_string(kHops + 1) + " variables are assigned the value " + value + ", they are: ";
}

struct Chain {
  std::vector<std::string> vars, lines;
  std::string value;
};

// Names of name_len uppercase letters, distinct (a permutation of the 26^name_len names); the
// value in RULER's range, np.random.randint(10000, 99999).
Chain make_chain(uint64_t seed, int name_len) {
  Chain c;
  Permutation names(pow26(name_len), sub_seed(seed, 1));
  for (int i = 0; i <= kHops; i++) c.vars.push_back(letters_at(names.at(uint64_t(i)), name_len, true));
  Rng r(sub_seed(seed, 2));
  c.value = std::to_string(10000 + r.below(89999));
  c.lines.push_back("VAR " + c.vars[0] + " = " + c.value);
  for (int i = 0; i < kHops; i++)  // RULER's hop lines end in a space
    c.lines.push_back("VAR " + c.vars[size_t(i + 1)] + " = VAR " + c.vars[size_t(i)] + " ");
  return c;
}

// The chain in order among n noise lines, RULER's way: before 5 distinct lines chosen at random
// (sorted). An explicit depth puts the first assignment at that boundary and the others before
// distinct later lines (or at the end).
std::string place(const Chain& c, int64_t n, uint64_t seed, double depth,
                  std::vector<std::pair<int64_t, int64_t>>& spans) {
  Rng pr(sub_seed(seed, 3));
  std::vector<int64_t> at;
  if (depth < 0) {
    at = sample_distinct(pr, n, kHops + 1);
  } else {
    int64_t p0 = std::min(depth_boundary(depth, n), n - kHops);
    at = sample_distinct(pr, n - p0, kHops);
    for (auto& p : at) p += p0 + 1;
    at.push_back(p0);
  }
  std::sort(at.begin(), at.end());
  std::vector<Elem> items;
  for (auto& l : c.lines) items.push_back(Elem{l, '\n', int(items.size())});
  return assemble(noise_paragraphs(n), at, items, spans);
}

}  // namespace

Example generate_vt(const Config& cfg, const Tokenizer& tok) {
  // The worked example: 3-letter names, and as many noise lines (at least 5) as keep its
  // question and answer prefix within 500 tokens; then its answer and a blank line.
  std::string icl;
  {
    const uint64_t s = sub_seed(cfg.seed, 4);
    Chain c = make_chain(s, 3);
    auto text = [&](int64_t n) {
      std::vector<std::pair<int64_t, int64_t>> spans;
      return vt_question(place(c, n, s, -1.0, spans), c.value) + vt_prefix(c.value);
    };
    int64_t lo = kHops + 1, hi = 512;
    if (text_tokens(tok, text(lo)) <= kWorkedExampleTokens)
      while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        (text_tokens(tok, text(mid)) <= kWorkedExampleTokens ? lo : hi) = mid;
      }
    icl = text(lo) + " " + join(c.vars, " ") + "\n\n";
    if (!keep_worked_example(cfg.mode, text_tokens(tok, icl), cfg.length)) icl.clear();
  }
  const Chain c = make_chain(sub_seed(cfg.seed, 1), 5);
  BuildFn build = [&](int64_t n) {
    std::vector<std::pair<int64_t, int64_t>> spans;
    std::string ctx = place(c, n, cfg.seed, cfg.depth, spans);
    Draft d;
    d.prompt = icl + vt_question(ctx, c.value);
    d.context_begin = int64_t(icl.size() + std::string_view(kHead).size());
    d.context_end = d.context_begin + int64_t(ctx.size());
    for (auto [b, e] : spans) d.needles.push_back({d.context_begin + b, d.context_begin + e});
    d.answer_prefix = vt_prefix(c.value);
    d.target = cat({" ", join(c.vars, " ")});
    d.gold = c.vars;
    return d;
  };
  FitSpec fs;
  fs.min_units = kHops + 1;  // distinct lines for the five assignments
  fs.budget = cfg.mode == Mode::ruler ? kRulerBudget : -1;
  return fit("vt", cfg.mode, Scorer::match_all, cfg, tok, fs, build);
}

}  // namespace topk::tasks
