// RULER aggregation tasks: common words extraction (cwe) and frequent words extraction (fwe).
#include <algorithm>
#include <cmath>

#include "tasks/internal.h"
#include "topk/core.h"

namespace topk::tasks {

namespace {

constexpr int kCommon = 10;
constexpr int64_t kCweBudget = 120;  // RULER's tokens_to_generate
constexpr int64_t kFweBudget = 50;

// n distinct dictionary words; the first n of a partial shuffle, so a prefix for larger n.
std::vector<std::string> sample_words(Rng& r, int64_t n) {
  const auto& dict = dictionary_words();
  TOPK_ASSERT(n <= int64_t(dict.size()));
  std::vector<uint32_t> idx(dict.size());
  for (size_t i = 0; i < idx.size(); i++) idx[i] = uint32_t(i);
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; i++) {
    size_t j = size_t(i) + r.below(idx.size() - size_t(i));
    std::swap(idx[size_t(i)], idx[j]);
    out.push_back(dict[idx[size_t(i)]]);
  }
  return out;
}

struct WordList {
  std::string context;
  std::vector<std::string> common;
  std::vector<std::pair<int64_t, int64_t>> spans;  // occurrences of the common words
};

// RULER's get_example: kCommon words repeated fc times, the rest fu times, shuffled, numbered.
WordList cwe_list(uint64_t seed, int64_t nwords, int fc, int fu) {
  Rng r(sub_seed(seed, 1));
  std::vector<std::string> w = sample_words(r, nwords);
  std::vector<int> list;  // indices into w
  for (int i = 0; i < kCommon; i++)
    for (int k = 0; k < fc; k++) list.push_back(i);
  for (int64_t i = kCommon; i < nwords; i++)
    for (int k = 0; k < fu; k++) list.push_back(int(i));
  Rng r2(sub_seed(seed, 2));
  shuffle(r2, list);
  WordList out;
  out.common.assign(w.begin(), w.begin() + kCommon);
  out.context.reserve(list.size() * 12);
  for (size_t i = 0; i < list.size(); i++) {
    if (i) out.context += ' ';
    out.context += std::to_string(i + 1);
    out.context += ". ";
    int64_t b = int64_t(out.context.size());
    out.context += w[size_t(list[i])];
    if (list[i] < kCommon) out.spans.push_back({b, int64_t(out.context.size())});
  }
  return out;
}

const char* kCweHead =
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n";
const char* kCweQuestion = "\nQuestion: What are the 10 most common words in the above list?";
const char* kCwePrefix = " Answer: The top 10 words that appear most often in the list are:";

std::string numbered(const std::vector<std::string>& w) {
  std::string s;
  for (size_t i = 0; i < w.size(); i++) {
    s += ' ';
    s += std::to_string(i + 1);
    s += ". ";
    s += w[i];
  }
  return s;
}

}  // namespace

namespace {

Example generate_cwe_at(const Config& cfg, const Tokenizer& tok, bool big) {
  const int fc = big ? 30 : 6, fu = big ? 3 : 1;
  WordList ex = cwe_list(sub_seed(cfg.seed, 4), big ? 40 : 20, big ? 10 : 3, big ? 3 : 1);
  std::string icl = kCweHead + ex.context + kCweQuestion + kCwePrefix + numbered(ex.common) + "\n";
  if (!keep_worked_example(cfg.mode, text_tokens(tok, icl), cfg.length)) icl.clear();
  BuildFn build = [&](int64_t n) {
    WordList wl = cwe_list(cfg.seed, n, fc, fu);
    Draft d;
    d.prompt = icl + kCweHead;
    d.context_begin = int64_t(d.prompt.size());
    d.prompt += wl.context;
    d.context_end = int64_t(d.prompt.size());
    d.prompt += kCweQuestion;
    d.answer_prefix = kCwePrefix;
    for (auto [b, e] : wl.spans) d.needles.push_back({d.context_begin + b, d.context_begin + e});
    d.target = numbered(wl.common);
    d.gold = wl.common;
    return d;
  };
  FitSpec fs;
  fs.min_units = kCommon;
  fs.max_units = int64_t(dictionary_words().size());
  fs.pool = "words of the word list";
  fs.budget = cfg.mode == Mode::ruler ? kCweBudget : -1;
  return fit("cwe", cfg.mode, Scorer::match_all, cfg, tok, fs, build);
}

}  // namespace

Example generate_cwe(const Config& cfg, const Tokenizer& tok) {
  // RULER's frequencies: 30 / 3 from 4K tokens, 6 / 1 below; its one worked example has 40
  // words at 10 / 3 (20 words at 3 / 1 below 4K) and comes first, with its answer. RULER
  // counts a BPE's tokens; a tokenizer that spends more tokens a word (topk's bytes: about 7K
  // for the larger frequencies' least content) falls back to the smaller frequencies below the
  // length where the larger ones fit, instead of leaving a gap of lengths with no example.
  if (cfg.length < 4096) return generate_cwe_at(cfg, tok, false);
  try {
    return generate_cwe_at(cfg, tok, true);
  } catch (const Error& larger) {
    try {
      return generate_cwe_at(cfg, tok, false);
    } catch (const Error&) {
      throw larger;  // neither fits (past the word list): the larger frequencies' reason
    }
  }
}

namespace {

// Word counts int(n * k^-2 / zeta(2)) for ranks k = 1..V (RULER fwe, alpha = 2), with numpy's
// operation order; k^-2 as 1 / (k * k), which is what a correctly rounded pow gives, on every
// machine.
std::vector<int64_t> zipf_counts(int64_t n, int64_t V) {
  const double zeta2 = 1.6449340668482264;
  std::vector<int64_t> c(static_cast<size_t>(V), 0);
  for (int64_t k = 1; k <= V; k++)
    c[size_t(k - 1)] = int64_t(double(n) * (1.0 / double(k * k)) / zeta2);
  return c;
}

}  // namespace

Example generate_fwe(const Config& cfg, const Tokenizer& tok) {
  const bool ruler = cfg.mode == Mode::ruler;
  const int64_t budget = cfg.answer_tokens >= 0 ? cfg.answer_tokens : ruler ? kFweBudget : 0;
  // RULER: a vocabulary of (length - budget) / 50 coded words of 6 letters, the first one '...'.
  const int64_t room = std::max<int64_t>(1, cfg.length - budget);
  const int64_t V = std::max<int64_t>(10, (ruler ? room : cfg.length) / 50);
  std::vector<std::string> vocab;
  {
    Permutation words(pow26(6), sub_seed(cfg.seed, 1));
    for (int64_t i = 0; i < V; i++) vocab.push_back(letters_at(words.at(uint64_t(i)), 6, false));
    vocab[0] = "...";  // the most frequent word is noise
  }
  // Smallest word count whose counts rank the words 2..4 strictly above the rest.
  int64_t n_min = 1;
  for (;; n_min++) {
    auto c = zipf_counts(n_min, 5);
    if (c[1] > c[2] && c[2] > c[3] && c[3] > c[4]) break;
  }
  // RULER's search steps the word count from room / 6 by room / 32 and keeps the last count
  // that fits; a unit here is one such step (one word in compact mode).
  const int64_t inc = ruler ? std::max<int64_t>(1, room / 32) : 1;
  const int64_t base = ruler ? room / 6 : n_min;
  const int64_t k0 = base >= n_min ? (base - n_min) / inc : -((n_min - base + inc - 1) / inc);
  const int64_t w0 = base - k0 * inc;  // the least grid count >= n_min
  BuildFn build = [&](int64_t u) {
    const int64_t n = w0 + u * inc;
    auto c = zipf_counts(n, V);
    std::vector<int> list;
    for (int64_t k = 0; k < V; k++)
      for (int64_t j = 0; j < c[size_t(k)]; j++) list.push_back(int(k));
    Rng r2(sub_seed(cfg.seed, 2));
    shuffle(r2, list);
    Draft d;
    d.prompt =
        "Read the following coded text and track the frequency of each coded word. Find the three "
        "most frequently appeared coded words. ";
    d.context_begin = int64_t(d.prompt.size());
    d.prompt.reserve(d.prompt.size() + list.size() * 7 + 256);
    for (size_t i = 0; i < list.size(); i++) {
      if (i) d.prompt += ' ';
      int64_t b = int64_t(d.prompt.size());
      d.prompt += vocab[size_t(list[i])];
      if (list[i] >= 1 && list[i] <= 3) d.needles.push_back({b, int64_t(d.prompt.size())});
    }
    d.context_end = int64_t(d.prompt.size());
    d.prompt +=
        "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the "
        "three most frequently appeared words in the above coded text?";
    d.answer_prefix =
        " Answer: According to the coded text above, the three most frequently appeared words are:";
    d.gold = {vocab[1], vocab[2], vocab[3]};
    d.units = n;  // the word budget, not the grid step
    d.target = cat({" ", join(d.gold, " ")});
    return d;
  };
  FitSpec fs;
  fs.min_units = 0;
  fs.budget = ruler ? kFweBudget : -1;
  return fit("fwe", cfg.mode, Scorer::match_all, cfg, tok, fs, build);
}

}  // namespace topk::tasks
