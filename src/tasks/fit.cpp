// Length control: binary search of the haystack size so that prompt + answer budget fits.
#include <algorithm>

#include "tasks/internal.h"
#include "topk/core.h"

namespace topk::tasks {

Tokenizer byte_tokenizer() {
  Tokenizer t;
  t.name = "bytes";
  t.byte_level = true;
  t.n_bos = 1;
  t.encode = [](std::string_view s) {
    std::vector<int32_t> ids;
    ids.reserve(s.size() + 1);
    ids.push_back(256);
    for (unsigned char c : s) ids.push_back(int32_t(c));
    return ids;
  };
  return t;
}

uint64_t sub_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + (stream + 1) * 0xd1b54a32d192ed03ull;
  z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
  return z ^ (z >> 29);
}

namespace {

int64_t count(const Tokenizer& tok, std::string_view s) {
  if (tok.byte_level) return tok.n_bos + int64_t(s.size());
  return int64_t(tok.encode(s).size());
}

struct Cost {
  int64_t prompt = 0, answer = 0;
  int64_t total() const { return prompt + answer; }
};

Cost cost(const Draft& d, const Config& cfg, const Tokenizer& tok) {
  Cost c;
  c.prompt = count(tok, d.prompt + d.answer_prefix);
  c.answer = cfg.answer_tokens >= 0 ? cfg.answer_tokens
                                    : count(tok, d.target) - count(tok, std::string_view());
  return c;
}

}  // namespace

Example fit(const char* task, Scorer scorer, const Config& cfg, const Tokenizer& tok,
            int64_t min_units, int64_t max_units, const BuildFn& build) {
  TOPK_CHECK(tok.encode, "task %s: the tokenizer has no encode function", task);
  TOPK_CHECK(cfg.length > 0, "task %s: length must be positive, got %lld", task,
             (long long)cfg.length);
  int64_t n_lo = min_units;
  Draft d = build(n_lo);
  Cost c = cost(d, cfg, tok);
  TOPK_CHECK(c.total() <= cfg.length,
             "task %s needs a length of at least %lld tokens with the %s tokenizer (its template "
             "and minimum content), got %lld",
             task, (long long)c.total(), tok.name.c_str(), (long long)cfg.length);
  // Grow geometrically from an estimate of tokens per unit, then bisect [fits, too long).
  int64_t n_hi = -1;
  int64_t step = std::min(std::max<int64_t>(1, min_units), max_units - n_lo);
  if (step > 0) {
    Draft d2 = build(n_lo + step);
    int64_t per = std::max<int64_t>(1, (cost(d2, cfg, tok).total() - c.total()) / step);
    int64_t guess = n_lo + (cfg.length - c.total()) / per;
    step = std::max<int64_t>(1, guess - n_lo);
  }
  while (n_hi < 0) {
    int64_t n = std::min(max_units, n_lo + step);
    if (n <= n_lo) break;  // max_units reached and it fits
    if (cost(build(n), cfg, tok).total() <= cfg.length) {
      n_lo = n;
      step *= 2;
    } else {
      n_hi = n;
    }
  }
  while (n_hi >= 0 && n_hi - n_lo > 1) {
    int64_t mid = n_lo + (n_hi - n_lo) / 2;
    if (cost(build(mid), cfg, tok).total() <= cfg.length) n_lo = mid;
    else n_hi = mid;
  }
  d = build(n_lo);
  c = cost(d, cfg, tok);
  TOPK_ASSERT(c.total() <= cfg.length);
  TOPK_CHECK(n_lo < max_units || cfg.length - c.total() <= std::max<int64_t>(16, cfg.length / 50),
             "task %s: its content runs out at %lld units (%lld tokens), short of length %lld; "
             "use a shorter length%s",
             task, (long long)max_units, (long long)c.total(), (long long)cfg.length,
             std::string(task) == "cwe" ? " or a larger word list (TOPK_WORDLIST)" : "");

  Example e;
  e.task = task;
  e.seed = cfg.seed;
  e.depth = cfg.depth;
  e.target_tokens = cfg.length;
  e.prompt_tokens = c.prompt;
  e.answer_tokens = c.answer;
  e.units = n_lo;
  e.scorer = scorer;
  e.context_begin = d.context_begin;
  e.context_end = d.context_end;
  std::sort(d.needles.begin(), d.needles.end());
  std::vector<int64_t> starts;
  if (!tok.byte_level && tok.starts) {
    starts = tok.starts(d.prompt);
    TOPK_CHECK(starts.size() == tok.encode(d.prompt).size(),
               "tokenizer %s: starts() gave %zu offsets for %zu tokens", tok.name.c_str(),
               starts.size(), tok.encode(d.prompt).size());
    TOPK_CHECK(std::is_sorted(starts.begin(), starts.end()),
               "tokenizer %s: starts() must be non-decreasing", tok.name.c_str());
  }
  for (auto [b, en] : d.needles) {
    Needle nd;
    nd.char_begin = b;
    nd.char_end = en;
    if (tok.byte_level) {
      nd.token_begin = tok.n_bos + b;
      nd.token_end = tok.n_bos + en;
    } else if (tok.starts) {  // the token holding byte b; the first token starting at or after en
      nd.token_begin = int64_t(std::upper_bound(starts.begin(), starts.end(), b) - starts.begin()) - 1;
      nd.token_end = int64_t(std::lower_bound(starts.begin(), starts.end(), en) - starts.begin());
    } else {
      nd.token_begin = count(tok, std::string_view(d.prompt).substr(0, size_t(b)));
      nd.token_end = count(tok, std::string_view(d.prompt).substr(0, size_t(en)));
    }
    e.needles.push_back(nd);
  }
  e.prompt = std::move(d.prompt);
  e.answer_prefix = std::move(d.answer_prefix);
  e.gold = std::move(d.gold);
  e.target = std::move(d.target);
  return e;
}

}  // namespace topk::tasks
