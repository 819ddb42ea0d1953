// Retrieval probes: HELMET JSON key-value, passkey, multi-query associative recall (MQAR), ar.
#include <algorithm>
#include <set>

#include "tasks/internal.h"

namespace topk::tasks {

namespace {

constexpr int64_t kHelmetBudget = 100;  // HELMET's generation_max_length for json_kv
constexpr int kHelmetShots = 2;

// HELMET's pair counts per input length (its data files test_k{50..1800}_dep6), linear between
// them and proportional beyond.
int64_t helmet_pairs(int64_t length) {
  static const int64_t grid[][2] = {{4096, 50},   {8192, 105},  {16384, 220},
                                    {32768, 440}, {65536, 900}, {131072, 1800}};
  if (length <= grid[0][0]) return std::max<int64_t>(1, (grid[0][1] * length + grid[0][0] / 2) / grid[0][0]);
  for (size_t i = 1; i < std::size(grid); i++)
    if (length <= grid[i][0]) {
      const int64_t l0 = grid[i - 1][0], p0 = grid[i - 1][1], l1 = grid[i][0], p1 = grid[i][1];
      return p0 + ((p1 - p0) * (length - l0) + (l1 - l0) / 2) / (l1 - l0);
    }
  return (1800 * length + 65536) / 131072;
}

std::string record(const std::string& k, const std::string& v) { return cat({"\"", k, "\": \"", v, "\""}); }

}  // namespace

// HELMET's JSON key-value retrieval ("lost in the middle" kv_retrieval, context first): a JSON
// object of UUID pairs in that generator's layout ({"k": "v",\n "k": "v", ... "k": "v"}), then the
// instruction, two worked lookups of other pairs of the object, and the key asked for.
Example generate_json_kv(const Config& cfg, const Tokenizer& tok) {
  const bool helmet = cfg.mode == Mode::helmet;
  Rng r(sub_seed(cfg.seed, 1));
  std::set<std::string> used;
  const std::string key = fresh_uuid(r, used), value = fresh_uuid(r, used);
  BuildFn build = [&](int64_t n) {
    Rng hr(sub_seed(cfg.seed, 2));
    std::set<std::string> u = used;
    std::vector<std::pair<std::string, std::string>> kv;
    for (int64_t i = 0; i + 1 < n; i++) {
      std::string k = fresh_uuid(hr, u);
      kv.emplace_back(std::move(k), fresh_uuid(hr, u));
    }
    Rng pr(sub_seed(cfg.seed, 3));
    const int64_t g = cfg.depth >= 0 ? depth_boundary(cfg.depth, n - 1) : int64_t(pr.below(uint64_t(n)));
    kv.insert(kv.begin() + g, {key, value});
    // Worked lookups: other pairs of the object, in random order.
    std::string demos;
    if (n > kHelmetShots)
      for (int64_t i : sample_distinct(pr, n - 1, kHelmetShots)) {
        const auto& p = kv[size_t(i >= g ? i + 1 : i)];
        demos += cat({"Key: \"", p.first, "\"\nCorresponding value: ", p.second, "\n\n"});
      }
    if (!keep_worked_example(cfg.mode, text_tokens(tok, demos), cfg.length)) demos.clear();
    Draft d;
    d.prompt = "JSON data:\n";
    d.context_begin = int64_t(d.prompt.size());
    d.prompt.reserve(size_t(n) * 82 + 512);
    for (int64_t i = 0; i < n; i++) {
      d.prompt += i ? " " : "{";
      if (i == g) d.needles.push_back({int64_t(d.prompt.size()), 0});
      d.prompt += record(kv[size_t(i)].first, kv[size_t(i)].second);
      if (i == g) d.needles.back().second = int64_t(d.prompt.size());
      d.prompt += i + 1 < n ? ",\n" : "}";
    }
    d.context_end = int64_t(d.prompt.size());
    d.prompt += "\n\nExtract the value corresponding to the specified key in the JSON object below.\n\n";
    d.prompt += demos;
    d.prompt += cat({"Key: \"", key, "\"\n"});
    d.answer_prefix = "Corresponding value:";
    d.gold = {value};
    d.target = " " + value;
    return d;
  };
  FitSpec fs;
  fs.min_units = helmet ? kHelmetShots + 1 : 1;  // the gold pair and the worked lookups' pairs
  if (helmet) {
    fs.max_units = std::max(fs.min_units, helmet_pairs(cfg.length));
    fs.cap = true;
    fs.budget = kHelmetBudget;
  }
  return fit("json_kv", cfg.mode, Scorer::substring_exact_match, cfg, tok, fs, build);
}

// Passkey retrieval (the Landmark-attention probe) in compact wording for small contexts.
Example generate_passkey(const Config& cfg, const Tokenizer& tok) {
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 1));
    std::string key = digits(r, 5);
    std::vector<Elem> hay = noise_sentences(n);
    Rng pr(sub_seed(cfg.seed, 3));
    const int64_t S = slots(hay);
    std::vector<int64_t> at{cfg.depth >= 0 ? depth_boundary(cfg.depth, S) : int64_t(pr.below(uint64_t(S) + 1))};
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
  return fit("passkey", cfg.mode, Scorer::match_all, cfg, tok, FitSpec{}, build);
}

// MQAR as text: "key=value" pairs (5 lowercase letters = 4 digits), then 4 queried keys whose
// values are to be listed in query order. Keys are distinct draws from the 26^5 names.
Example generate_mqar(const Config& cfg, const Tokenizer& tok) {
  constexpr int kQueries = 4, kKeyLetters = 5;
  const Permutation kperm(pow26(kKeyLetters), sub_seed(cfg.seed, 1));
  BuildFn build = [&](int64_t n) {
    Rng r(sub_seed(cfg.seed, 2));
    std::vector<std::string> keys, values;
    for (int64_t i = 0; i < n; i++) {
      keys.push_back(letters_at(kperm.at(uint64_t(i)), kKeyLetters, false));
      values.push_back(digits(r, 4));
    }
    // Queried pairs: the first at `depth` (or random), the others random and distinct.
    Rng pr(sub_seed(cfg.seed, 3));
    std::vector<int64_t> q;
    if (cfg.depth >= 0) {
      const int64_t g = depth_boundary(cfg.depth, n - 1);
      q = sample_distinct(pr, n - 1, kQueries - 1);
      for (auto& i : q) i += i >= g;
      q.push_back(g);
      shuffle(pr, q);
    } else {
      q = sample_distinct(pr, n, kQueries);
    }
    Draft d;
    d.prompt = "Pairs:\n";
    d.context_begin = int64_t(d.prompt.size());
    d.prompt.reserve(size_t(n) * 11 + 64);
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
    d.target = cat({" ", join(d.gold, " ")});
    return d;
  };
  FitSpec fs;
  fs.min_units = kQueries;
  fs.max_units = int64_t(pow26(kKeyLetters));
  fs.pool = "5-letter keys";
  return fit("mqar", cfg.mode, Scorer::match_all, cfg, tok, fs, build);
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
  FitSpec fs;
  fs.min_units = 4;
  return fit("ar", cfg.mode, Scorer::match_all, cfg, tok, fs, build);
}

}  // namespace topk::tasks
