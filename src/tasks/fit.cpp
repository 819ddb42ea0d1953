// Length control: the search for the haystack size whose prompt + answer budget fits, in the
// evaluated model's tokens, with few encodes of the full prompt.
#include <algorithm>
#include <cmath>

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

Tokenizer make_tokenizer(std::string name,
                         std::function<std::vector<int32_t>(std::string_view)> encode,
                         std::function<int64_t(int32_t)> piece_bytes) {
  TOPK_CHECK(encode, "tokenizer %s: no encode function", name.c_str());
  Tokenizer t;
  t.name = std::move(name);
  t.n_bos = int(encode(std::string_view()).size());
  if (piece_bytes)
    t.starts = [encode, piece_bytes](std::string_view s) {
      std::vector<int32_t> ids = encode(s);
      std::vector<int64_t> st;
      st.reserve(ids.size());
      int64_t off = 0;
      for (int32_t id : ids) {
        int64_t b = piece_bytes(id);
        st.push_back(b == 0 && off == 0 ? -1 : off);  // BOS and the like cover no text
        off += b;
      }
      if (off != int64_t(s.size())) st.clear();  // pieces do not spell the text: no starts
      return st;
    };
  t.encode = std::move(encode);
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

}  // namespace

int64_t text_tokens(const Tokenizer& tok, std::string_view s) { return count(tok, s) - tok.n_bos; }

bool keep_worked_example(Mode mode, int64_t tokens, int64_t length) {
  return mode != Mode::compact || tokens <= length / 4;
}

Example fit(const char* task, Mode mode, Scorer scorer, const Config& cfg, const Tokenizer& tok,
            const FitSpec& spec, const BuildFn& build) {
  TOPK_CHECK(tok.encode, "task %s: the tokenizer has no encode function", task);
  const int64_t L = cfg.length;
  TOPK_CHECK(L > 0, "task %s: length must be positive, got %lld", task, (long long)L);
  const int64_t maxu = std::max(spec.min_units, spec.max_units);
  auto budget = [&](const Draft& d) {
    if (cfg.answer_tokens >= 0) return cfg.answer_tokens;
    if (spec.budget >= 0) return spec.budget;
    return text_tokens(tok, d.target);
  };
  auto cost = [&](const Draft& d) { return count(tok, d.prompt + d.answer_prefix) + budget(d); };

  // The bracket: `lo` fits (its draft kept in `best`), `hi` does not (-1 until found).
  int64_t lo = spec.min_units, hi = -1, c_hi = 0;
  Draft best = build(lo);
  int64_t c_lo = cost(best);
  TOPK_CHECK(c_lo <= L,
             "task %s (%s mode) needs a length of at least %lld tokens with the %s tokenizer (its "
             "template and minimum content), got %lld",
             task, mode_name(mode), (long long)c_lo, tok.name.c_str(), (long long)L);
  int64_t ref_n = -1, ref_c = 0;  // an earlier fitting point, for the per-unit cost
  auto probe = [&](int64_t n) {
    Draft d = build(n);
    int64_t c = cost(d);
    if (c <= L) {
      ref_n = lo, ref_c = c_lo;
      lo = n, c_lo = c, best = std::move(d);
    } else {
      hi = n, c_hi = c;
    }
  };
  if (spec.cap && maxu > lo) probe(maxu);  // the intended count usually fits
  bool bisect = false;
  while (lo < maxu && (hi < 0 || hi - lo > 1)) {
    int64_t n;
    if (hi < 0) {
      // No upper bound yet: double the least content, then extrapolate from the cost per unit
      // of the last two probes, aiming a little past the length so that the next probe
      // brackets it. A probe grows the content at most 16-fold, so that an estimate from a few
      // small units (which may cost nothing) cannot ask for a huge build.
      n = lo + std::max<int64_t>(1, lo);
      if (ref_n >= 0 && c_lo > ref_c) {
        double per = double(c_lo - ref_c) / double(lo - ref_n);
        double jump = std::ceil(double(L - c_lo) / per * 1.01) + 2;
        n = lo + int64_t(std::min(jump, 15.0 * double(std::max<int64_t>(1, lo)) + 1));
      }
      n = std::min(n, maxu);
    } else {
      // Inside the bracket: interpolate to just under the length, bisecting when that stalls.
      const int64_t width = hi - lo;
      if (bisect) {
        n = lo + width / 2;
      } else {
        double per = std::max(1e-9, double(c_hi - c_lo) / double(width));
        n = lo + int64_t(std::floor(double(L - c_lo) / per));
      }
      n = std::clamp(n, lo + 1, hi - 1);
      probe(n);
      bisect = !bisect && (hi - lo) * 2 > width;
      continue;
    }
    probe(n);
  }
  Draft& d = best;
  const int64_t slack = L - c_lo;
  TOPK_CHECK(spec.cap || lo < maxu || slack <= std::max<int64_t>(16, L / 50),
             "task %s: its %s run out at %lld units: with the %s tokenizer it supports lengths up "
             "to %lld tokens, got %lld%s",
             task, spec.pool ? spec.pool : "content", (long long)maxu, tok.name.c_str(),
             (long long)c_lo, (long long)L,
             std::string(task) == "cwe" ? " (a larger word list in TOPK_WORDLIST reaches further)" : "");

  Example e;
  e.task = task;
  e.mode = mode;
  e.seed = cfg.seed;
  e.depth = cfg.depth;
  e.target_tokens = L;
  e.answer_tokens = budget(d);
  e.prompt_tokens = c_lo - e.answer_tokens;
  e.units = d.units >= 0 ? d.units : lo;
  e.scorer = scorer;
  e.context_begin = d.context_begin;
  e.context_end = d.context_end;
  std::sort(d.needles.begin(), d.needles.end());
  std::vector<int64_t> starts;
  if (!tok.byte_level && tok.starts) {
    starts = tok.starts(d.prompt);
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
    } else if (!starts.empty()) {  // the token holding byte b; the first token at or after en
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
