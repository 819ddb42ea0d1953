// RULER needle-in-a-haystack family: single, multikey, multivalue, multiquery.
#include <algorithm>
#include <set>

#include "tasks/internal.h"
#include "topk/core.h"

namespace topk::tasks {

namespace {

constexpr int64_t kRulerNiahBudget = 128;  // RULER's tokens_to_generate for niah

std::string needle_text(const char* type, const std::string& key, const std::string& value) {
  return cat({"One of the special magic ", type, "s for ", key, " is: ", value, "."});
}

// Insertion slots, RULER's way. Sentence haystacks (essay): each needle at a distinct one of
// the 40 depths, int(S * depth / 100) of the S sentences (never after a cut last sentence).
// Line haystacks (noise, needle): each needle before a distinct line of the n. An explicit
// depth puts the gold needles at that boundary and keeps the others off it.
std::vector<int64_t> place(Rng& r, bool sentences, const std::vector<Elem>& hay,
                           const std::vector<bool>& gold, double depth) {
  const int64_t m = int64_t(gold.size());
  std::vector<int64_t> at(static_cast<size_t>(m));
  if (sentences) {
    const int64_t S = int64_t(hay.size()), top = slots(hay);
    const auto& D = ruler_depths();
    int64_t skip = -1;  // the depth nearest to the explicit one
    if (depth >= 0) skip = std::llround(depth * 39.0);
    int64_t others = depth >= 0 ? std::count(gold.begin(), gold.end(), false) : m;
    std::vector<int64_t> pick = sample_distinct(r, skip >= 0 ? 39 : 40, others);
    std::sort(pick.begin(), pick.end());  // RULER sorts the slots and fills them in order
    size_t j = 0;
    for (int64_t i = 0; i < m; i++) {
      if (depth >= 0 && gold[size_t(i)]) {
        at[size_t(i)] = depth_boundary(depth, top);
      } else {
        int64_t d = pick[j++];
        if (skip >= 0 && d >= skip) d++;
        at[size_t(i)] = std::min(top, depth_slot(S, D[size_t(d)]));
      }
    }
    return at;
  }
  const int64_t n = int64_t(hay.size());
  int64_t g = depth >= 0 ? depth_boundary(depth, n) : -1;
  int64_t others = depth >= 0 ? std::count(gold.begin(), gold.end(), false) : m;
  // Distinct lines in [0, n), leaving out the gold's boundary when it is one of them.
  int64_t pool = n - (g >= 0 && g < n ? 1 : 0);
  std::vector<int64_t> pick = sample_distinct(r, pool, std::min(others, pool));
  size_t j = 0;
  for (int64_t i = 0; i < m; i++) {
    if (depth >= 0 && gold[size_t(i)]) {
      at[size_t(i)] = g;
    } else {
      int64_t p = j < pick.size() ? pick[j++] : n;
      if (g >= 0 && p >= g && p < n) p++;
      at[size_t(i)] = std::min(p, n);
    }
  }
  return at;
}

}  // namespace

Example generate_niah(const NiahSpec& sp, const Config& cfg, const Tokenizer& tok) {
  const char* type = sp.uuid_values ? "uuid" : "number";
  // Keys and values of the example, drawn once: keys and 7-digit values come from seeded
  // permutations of their pools, so the distractors of a needle haystack take the following
  // draws and can never repeat a gold key or value.
  const Permutation kperm(key_pool_size(), sub_seed(cfg.seed, 5));
  const Permutation vperm(kNumberPool, sub_seed(cfg.seed, 6));
  Rng r(sub_seed(cfg.seed, 1));
  std::set<std::string> used_uuids;
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> values;
  struct N { std::string text; int key; };
  std::vector<N> needles;
  uint64_t nv = 0;
  for (int i = 0; i < sp.k; i++) {
    keys.push_back(sp.uuid_keys ? fresh_uuid(r, used_uuids) : key_at(kperm.at(uint64_t(i))));
    values.emplace_back();
    for (int j = 0; j < sp.v; j++) {
      values.back().push_back(sp.uuid_values ? fresh_uuid(r, used_uuids) : number_at(vperm.at(nv++)));
      needles.push_back({needle_text(type, keys.back(), values.back().back()), i});
    }
  }
  shuffle(r, needles);
  std::vector<int64_t> qi = sample_distinct(r, sp.k, sp.q);  // the queried keys, in query order
  std::vector<std::string> query, gold;
  for (int64_t i : qi) {
    query.push_back(keys[size_t(i)]);
    for (auto& v : values[size_t(i)]) gold.push_back(v);
  }
  std::vector<bool> is_gold;
  for (auto& nd : needles)
    is_gold.push_back(std::find(qi.begin(), qi.end(), nd.key) != qi.end());

  const bool one = gold.size() == 1;
  const std::string q = join_and(query);
  // RULER's template; with one answer expected, its singular form ('Some' -> 'A', 'are' -> 'is').
  const std::string head =
      one ? cat({"A special magic ", type, " is hidden within the following text. Make sure to "
                 "memorize it. I will quiz you about the ", type, " afterwards.\n"})
          : cat({"Some special magic ", type, "s are hidden within the following text. Make sure "
                 "to memorize it. I will quiz you about the ", type, "s afterwards.\n"});
  const std::string question =
      one ? cat({"\nWhat is the special magic ", type, " for ", q, " mentioned in the provided text?"})
          : cat({"\nWhat are all the special magic ", type, "s for ", q,
                 " mentioned in the provided text?"});
  const std::string prefix =
      one ? cat({" The special magic ", type, " for ", q, " mentioned in the provided text is"})
          : cat({" The special magic ", type, "s for ", q, " mentioned in the provided text are"});

  const bool essay = sp.hay == NiahSpec::essay;
  BuildFn build = [&](int64_t n) {
    std::vector<Elem> hay;
    if (sp.hay == NiahSpec::noise) {
      hay = noise_paragraphs(n);
    } else if (essay) {
      hay = prose_sentences(cfg.seed, n);
    } else {
      Rng hr(sub_seed(cfg.seed, 2));
      std::set<std::string> used = used_uuids;
      for (int64_t i = 0; i < n; i++) {
        std::string key = sp.uuid_keys ? fresh_uuid(hr, used) : key_at(kperm.at(uint64_t(sp.k + i)));
        std::string value = sp.uuid_values ? fresh_uuid(hr, used) : number_at(vperm.at(nv + uint64_t(i)));
        hay.push_back(Elem{needle_text(type, key, value), '\n'});
      }
    }
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<int64_t> at = place(pr, essay, hay, is_gold, cfg.depth);
    std::vector<Elem> items;
    for (auto& nd : needles) items.push_back(Elem{nd.text, essay ? ' ' : '\n', int(items.size())});
    std::vector<std::pair<int64_t, int64_t>> spans;
    std::string context = assemble(hay, at, items, spans);
    Draft d;
    d.context_begin = int64_t(head.size());
    d.context_end = d.context_begin + int64_t(context.size());
    d.prompt = head + context + question;
    d.answer_prefix = prefix;
    for (size_t i = 0; i < needles.size(); i++)
      if (is_gold[i]) d.needles.push_back({d.context_begin + spans[i].first, d.context_begin + spans[i].second});
    d.target = cat({" ", join_and(gold), "."});
    d.gold = gold;
    return d;
  };
  FitSpec fs;
  // Distinct lines for the needles of a line haystack (RULER samples them from its lines).
  fs.min_units = essay ? 1 : int64_t(needles.size());
  if (sp.hay == NiahSpec::needle && !sp.uuid_keys) {
    fs.max_units = int64_t(key_pool_size()) - sp.k;
    fs.pool = "adjective-noun keys";
  }
  fs.budget = cfg.mode == Mode::ruler ? kRulerNiahBudget : -1;
  return fit(sp.name, cfg.mode, Scorer::match_all, cfg, tok, fs, build);
}

}  // namespace topk::tasks
