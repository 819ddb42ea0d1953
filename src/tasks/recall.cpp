// Retrieval probes: HELMET JSON key-value, passkey, multi-query associative recall (MQAR).
#include <algorithm>
#include <set>

#include "tasks/internal.h"

namespace topk::tasks {

// "Lost in the middle" key-value retrieval as HELMET uses it: a JSON object of UUID pairs,
// one pair per line (json.dumps(indent=1) layout).
Example generate_json_kv(const Config& cfg, const Tokenizer& tok) {
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 1));
    std::string key = uuid4(r), value = uuid4(r);
    std::set<std::string> used{key};
    Rng hr(sub_seed(cfg.seed, 2));
    std::vector<Elem> hay;
    for (int64_t i = 0; i + 1 < n; i++) {
      std::string k;
      do k = uuid4(hr); while (!used.insert(k).second);
      hay.push_back(Elem{" \"" + k + "\": \"" + uuid4(hr) + "\"", '\n'});
    }
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<int64_t> at{boundary(pr, cfg.depth, int64_t(hay.size()))};
    std::vector<Elem> items{Elem{" \"" + key + "\": \"" + value + "\"", '\n', 0}};
    // Commas after every pair but the last: decide after placement.
    std::vector<std::pair<int64_t, int64_t>> spans;
    for (auto& h : hay) h.text += ',';
    items[0].text += ',';
    std::string body = assemble(hay, at, items, spans);
    body.pop_back();  // the last pair's comma
    if (spans[0].second > int64_t(body.size())) spans[0].second = int64_t(body.size());
    Draft d;
    d.prompt = "Extract the value corresponding to the specified key in the JSON object below.\n\n"
               "JSON data:\n{\n";
    d.context_begin = int64_t(d.prompt.size());
    d.prompt += body;
    d.context_end = int64_t(d.prompt.size());
    d.prompt += "\n}\n\nKey: \"" + key + "\"\n";
    d.answer_prefix = "Corresponding value:";
    d.needles.push_back({d.context_begin + spans[0].first + 1, d.context_begin + spans[0].second});
    d.gold = {value};
    d.target = " " + value;
    return d;
  };
  return fit("json_kv", Scorer::match_all, cfg, tok, 1, int64_t(1) << 40, build);
}

// Passkey retrieval (the Landmark-attention probe) in compact wording for small contexts.
Example generate_passkey(const Config& cfg, const Tokenizer& tok) {
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 1));
    std::string key = digits(r, 5);
    std::vector<Elem> hay = noise_sentences(n);
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<int64_t> at{boundary(pr, cfg.depth, slots(hay))};
    std::vector<Elem> items{
        Elem{"The pass key is " + key + ". Remember it. " + key + " is the pass key.", ' ', 0}};
    std::vector<std::pair<int64_t, int64_t>> spans;
    std::string ctx = assemble(hay, at, items, spans);
    Draft d;
    d.prompt = "A pass key is hidden in the text below. Remember it.\n";
    d.context_begin = int64_t(d.prompt.size());
    d.prompt += ctx;
    d.context_end = int64_t(d.prompt.size());
    d.prompt += "\nWhat is the pass key?";
    d.answer_prefix = " The pass key is";
    d.needles.push_back({d.context_begin + spans[0].first, d.context_begin + spans[0].second});
    d.gold = {key};
    d.target = " " + key + ".";
    return d;
  };
  return fit("passkey", Scorer::match_all, cfg, tok, 1, int64_t(1) << 40, build);
}

// MQAR as text: "key=value" pairs (4 lowercase letters = 4 digits), then 4 queried keys whose
// values are to be listed in query order.
Example generate_mqar(const Config& cfg, const Tokenizer& tok) {
  constexpr int kQueries = 4;
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 1));
    std::set<std::string> used;
    std::vector<std::string> keys, values;
    while (int64_t(keys.size()) < n) {
      std::string k = letters(r, 4, false);
      if (!used.insert(k).second) continue;
      keys.push_back(k);
      values.push_back(digits(r, 4));
    }
    // Queried pairs: the first at `depth` (or random), the others random and distinct.
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<int64_t> q{boundary(pr, cfg.depth, n - 1)};
    while (int(q.size()) < kQueries) {
      int64_t i = int64_t(pr.below(uint64_t(n)));
      if (std::find(q.begin(), q.end(), i) == q.end()) q.push_back(i);
    }
    shuffle(pr, q);
    Draft d;
    d.prompt = "Pairs:\n";
    d.context_begin = int64_t(d.prompt.size());
    std::vector<std::pair<int64_t, int64_t>> span(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) {
      if (i) d.prompt += ' ';
      span[size_t(i)].first = int64_t(d.prompt.size());
      d.prompt += keys[size_t(i)] + "=" + values[size_t(i)];
      span[size_t(i)].second = int64_t(d.prompt.size());
    }
    d.context_end = int64_t(d.prompt.size());
    d.prompt += "\nQuery:";
    for (int64_t i : q) {
      d.prompt += ' ';
      d.prompt += keys[size_t(i)];
      d.gold.push_back(values[size_t(i)]);
      d.needles.push_back(span[size_t(i)]);
    }
    d.answer_prefix = "\nAnswer:";
    d.target = std::string(" ") + join(d.gold, " ");
    return d;
  };
  return fit("mqar", Scorer::match_all, cfg, tok, kQueries, int64_t(1) << 40, build);
}

}  // namespace topk::tasks

namespace topk::tasks {

// Associative recall for tiny byte-level models: pairs of a one-digit value and a one-letter key
// ("3a 7c 1b": the value first, so that a key token can carry its value forward), then queries
// answered in place ("c7 a3"); the last query's value is the answer.
// A unit is one query; the pairs number min(units, 52) (keys a-z, then A-Z). The first queries
// ask every pair once in random order, later ones repeat keys at random.
Example generate_ar(const Config& cfg, const Tokenizer& tok) {
  constexpr int64_t kMaxPairs = 52;
  BuildFn build = [&](int64_t n) {
    const int64_t pairs = std::min(n, kMaxPairs);
    Rng r(sub_seed(cfg.seed, 1));
    std::vector<char> keys;
    for (int i = 0; i < kMaxPairs; i++) keys.push_back(char(i < 26 ? 'a' + i : 'A' + i - 26));
    shuffle(r, keys);
    keys.resize(size_t(pairs));
    std::vector<char> values;
    for (int64_t i = 0; i < pairs; i++) values.push_back(char('0' + r.below(10)));
    Rng qr(sub_seed(cfg.seed, 3));
    std::vector<int64_t> q;
    for (int64_t i = 0; i < pairs; i++) q.push_back(i);
    shuffle(qr, q);
    while (int64_t(q.size()) < n) q.push_back(int64_t(qr.below(uint64_t(pairs))));
    Draft d;
    d.prompt = "Pairs:";
    d.context_begin = int64_t(d.prompt.size());
    std::vector<int64_t> at(static_cast<size_t>(pairs));
    for (int64_t i = 0; i < pairs; i++) {
      d.prompt += ' ';
      at[size_t(i)] = int64_t(d.prompt.size());
      d.prompt += std::string{values[size_t(i)], keys[size_t(i)]};
    }
    d.context_end = int64_t(d.prompt.size());
    d.prompt += "\nQueries:";
    for (size_t i = 0; i + 1 < q.size(); i++)
      d.prompt += std::string{' ', keys[size_t(q[i])], values[size_t(q[i])]};
    const int64_t g = q.back();
    d.answer_prefix = std::string{' ', keys[size_t(g)]};
    d.gold = {std::string(1, values[size_t(g)])};
    d.target = d.gold[0];
    d.needles.push_back({at[size_t(g)], at[size_t(g)] + 2});
    return d;
  };
  return fit("ar", Scorer::match_all, cfg, tok, 4, int64_t(1) << 40, build);
}

}  // namespace topk::tasks
