// RULER variable tracking: one chain of 4 hops hidden in the noise haystack.
#include <algorithm>
#include <set>

#include "tasks/internal.h"

namespace topk::tasks {

namespace {

constexpr int kHops = 4;

std::string vt_question(const std::string& context, const std::string& value) {
  return "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n" +
         context + "\nQuestion: Find all variables that are assigned the value " + value +
         " in the text above.";
}

// RULER's answer prefix, its spelling ("assgined") included, so that scores compare.
std::string vt_prefix(const std::string& value) {
  return " Answer: According to the chain(s) of variable assignment in the text above, " +
         std::to_string(kHops + 1) + " variables are assgined the value " + value + ", they are: ";
}

struct Chain {
  std::vector<std::string> vars, lines;
  std::string value;
};

Chain make_chain(Rng& r, int name_len) {
  Chain c;
  std::set<std::string> used;
  while (int(c.vars.size()) < kHops + 1) {
    std::string v = letters(r, name_len, true);
    if (used.insert(v).second) c.vars.push_back(v);
  }
  c.value = std::to_string(10000 + r.below(90000));
  c.lines.push_back("VAR " + c.vars[0] + " = " + c.value);
  for (int i = 0; i < kHops; i++) c.lines.push_back("VAR " + c.vars[size_t(i + 1)] + " = VAR " + c.vars[size_t(i)]);
  return c;
}

// Inserts the chain in order: the first line at `depth` (or random), the rest at sorted
// random boundaries after it.
std::string place(const Chain& c, const std::vector<Elem>& hay, Rng& pr, double depth,
                  std::vector<std::pair<int64_t, int64_t>>& spans) {
  int64_t S = slots(hay);
  std::vector<int64_t> at{boundary(pr, depth, S)};
  std::vector<int64_t> rest;
  for (int i = 0; i < kHops; i++) rest.push_back(at[0] + int64_t(pr.below(uint64_t(S - at[0] + 1))));
  std::sort(rest.begin(), rest.end());
  at.insert(at.end(), rest.begin(), rest.end());
  std::vector<Elem> items;
  for (auto& l : c.lines) items.push_back(Elem{l, ' ', int(items.size())});
  return assemble(hay, at, items, spans);
}

}  // namespace

Example generate_vt(const Config& cfg, const Tokenizer& tok) {
  // One worked example first (3-letter names, 3 noise paragraphs), when it takes at most a
  // quarter of the target length.
  std::string icl;
  {
    Rng r(sub_seed(cfg.seed, 4));
    Chain c = make_chain(r, 3);
    std::vector<std::pair<int64_t, int64_t>> spans;
    std::string ctx = place(c, noise_sentences(3 * 19), r, -1.0, spans);  // 19 words a paragraph
    icl = vt_question(ctx, c.value) + vt_prefix(c.value) + join(c.vars, " ") + "\n\n";
    int64_t n = int64_t(tok.encode(icl).size()) - int64_t(tok.encode("").size());
    if (n > cfg.length / 4) icl.clear();
  }
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 1));
    Chain c = make_chain(r, 5);
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<std::pair<int64_t, int64_t>> spans;
    std::string ctx = place(c, noise_sentences(n), pr, cfg.depth, spans);
    Draft d;
    d.prompt = icl + vt_question(ctx, c.value);
    d.context_begin = int64_t(d.prompt.find(ctx, icl.size()));
    d.context_end = d.context_begin + int64_t(ctx.size());
    for (auto [b, e] : spans) d.needles.push_back({d.context_begin + b, d.context_begin + e});
    d.answer_prefix = vt_prefix(c.value);
    d.target = join(c.vars, " ");
    d.gold = c.vars;
    return d;
  };
  return fit("vt", Scorer::match_all, cfg, tok, 1, int64_t(1) << 40, build);
}

}  // namespace topk::tasks
