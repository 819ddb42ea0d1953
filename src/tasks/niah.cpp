// RULER needle-in-a-haystack family: single, multikey, multivalue, multiquery.
#include <algorithm>
#include <set>

#include "tasks/internal.h"

namespace topk::tasks {

namespace {

std::string fresh(Rng& r, bool uuid, std::set<std::string>& used, bool number) {
  for (;;) {
    std::string s = uuid ? uuid4(r) : number ? digits(r, 7) : key_words(r);
    if (used.insert(s).second) return s;
  }
}

std::string needle_text(const char* type, const std::string& key, const std::string& value) {
  return std::string("One of the special magic ") + type + "s for " + key + " is: " + value + ".";
}

}  // namespace

Example generate_niah(const NiahSpec& sp, const Config& cfg, const Tokenizer& tok) {
  const char* type = sp.uuid_values ? "uuid" : "number";
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 1));
    std::set<std::string> used;
    std::vector<std::string> keys, values;
    for (int i = 0; i < sp.k; i++) keys.push_back(fresh(r, sp.uuid_keys, used, false));
    for (int i = 0; i < sp.k * sp.v; i++) values.push_back(fresh(r, sp.uuid_values, used, true));
    // Needles key-major; the first q keys are queried; the insertion order is shuffled.
    struct N { std::string text; bool gold; };
    std::vector<N> needles;
    for (int i = 0; i < sp.k; i++)
      for (int j = 0; j < sp.v; j++)
        needles.push_back({needle_text(type, keys[size_t(i)], values[size_t(i * sp.v + j)]), i < sp.q});
    shuffle(r, needles);
    std::vector<std::string> query(keys.begin(), keys.begin() + sp.q);
    std::vector<std::string> gold(values.begin(), values.begin() + sp.q * sp.v);

    std::vector<Elem> hay;
    char sep = '\n';
    if (sp.hay == NiahSpec::noise) {
      hay = noise_lines(n);
    } else if (sp.hay == NiahSpec::essay) {
      hay = prose_sentences(cfg.seed, n);
      sep = ' ';
    } else {
      Rng hr(sub_seed(cfg.seed, 2));
      for (int64_t i = 0; i < n; i++) {
        std::string key = fresh(hr, sp.uuid_keys, used, false);
        std::string value = fresh(hr, sp.uuid_values, used, true);  // never a gold value
        hay.push_back(Elem{needle_text(type, key, value), '\n'});
      }
    }
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<Elem> items;
    std::vector<int64_t> at;
    for (auto& nd : needles) {
      items.push_back(Elem{nd.text, sep, int(items.size())});
      at.push_back(boundary(pr, nd.gold ? cfg.depth : -1.0, slots(hay)));
    }
    std::vector<std::pair<int64_t, int64_t>> spans;
    std::string context = assemble(hay, at, items, spans);

    bool one = gold.size() == 1;
    std::string q = join_and(query);
    std::string head = one ? std::string("A special magic ") + type +
                                 " is hidden within the following text. Make sure to memorize it. "
                                 "I will quiz you about the " + type + " afterwards.\n"
                           : std::string("Some special magic ") + type +
                                 "s are hidden within the following text. Make sure to memorize "
                                 "it. I will quiz you about the " + type + "s afterwards.\n";
    Draft d;
    d.context_begin = int64_t(head.size());
    d.context_end = d.context_begin + int64_t(context.size());
    d.prompt = head + context + "\n" +
               (one ? std::string("What is the special magic ") + type + " for " + q +
                          " mentioned in the provided text?"
                    : std::string("What are all the special magic ") + type + "s for " + q +
                          " mentioned in the provided text?");
    d.answer_prefix = one ? std::string(" The special magic ") + type + " for " + q +
                                " mentioned in the provided text is"
                          : std::string(" The special magic ") + type + "s for " + q +
                                " mentioned in the provided text are";
    for (size_t i = 0; i < needles.size(); i++)
      if (needles[i].gold)
        d.needles.push_back({d.context_begin + spans[i].first, d.context_begin + spans[i].second});
    d.target = cat({" ", join_and(gold), "."});
    d.gold = std::move(gold);
    return d;
  };
  return fit(sp.name, Scorer::match_all, cfg, tok, 1, int64_t(1) << 40, build);
}

}  // namespace topk::tasks
