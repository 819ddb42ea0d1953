// Haystacks: the RULER noise paragraph, generated prose, RULER's depths, needle insertion.
#include <algorithm>
#include <cmath>

#include "tasks/internal.h"
#include "tasks/words.h"
#include "topk/core.h"

namespace topk::tasks {

const char* const kNoise =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

std::string assemble(const std::vector<Elem>& hay, const std::vector<int64_t>& at,
                     const std::vector<Elem>& items, std::vector<std::pair<int64_t, int64_t>>& spans) {
  TOPK_ASSERT(at.size() == items.size());
  // Stable order: items sorted by position, ties in item order.
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return at[a] < at[b]; });
  std::vector<const Elem*> seq;
  std::vector<int> seq_item;
  size_t k = 0;
  for (int64_t h = 0; h <= int64_t(hay.size()); h++) {
    while (k < order.size() && at[order[k]] <= h) {
      TOPK_ASSERT(at[order[k]] >= 0 && at[order[k]] <= int64_t(hay.size()));
      seq.push_back(&items[order[k]]);
      seq_item.push_back(int(order[k]));
      k++;
    }
    if (h < int64_t(hay.size())) {
      seq.push_back(&hay[size_t(h)]);
      seq_item.push_back(-1);
    }
  }
  spans.assign(items.size(), {0, 0});
  std::string out;
  for (size_t i = 0; i < seq.size(); i++) {
    if (i) out += seq[i - 1]->sep;
    if (seq_item[i] >= 0) spans[size_t(seq_item[i])].first = int64_t(out.size());
    out += seq[i]->text;
    if (seq_item[i] >= 0) spans[size_t(seq_item[i])].second = int64_t(out.size());
  }
  return out;
}

// Splits a word stream into sentences (a word ending in '.' ends one).
static std::vector<Elem> to_sentences(const std::vector<std::string_view>& words,
                                      const std::vector<bool>& para_end) {
  std::vector<Elem> out;
  Elem cur;
  for (size_t i = 0; i < words.size(); i++) {
    if (!cur.text.empty()) cur.text += ' ';
    cur.text += words[i];
    if (words[i].back() == '.') {
      cur.sep = para_end[i] ? '\n' : ' ';
      out.push_back(std::move(cur));
      cur = Elem();
    }
  }
  if (!cur.text.empty()) out.push_back(std::move(cur));
  return out;
}

static void noise_words(int64_t nwords, std::vector<std::string_view>& words,
                        std::vector<bool>& para_end) {
  static const std::vector<std::string_view> para = [] {
    std::vector<std::string_view> w;
    std::string_view s(kNoise);
    size_t p = 0;
    while (p < s.size()) {
      size_t q = s.find(' ', p);
      if (q == std::string_view::npos) q = s.size();
      w.push_back(s.substr(p, q - p));
      p = q + 1;
    }
    return w;
  }();
  for (int64_t i = 0; i < nwords; i++) {
    size_t j = size_t(i) % para.size();
    words.push_back(para[j]);
    para_end.push_back(j + 1 == para.size());
  }
}

std::vector<Elem> noise_sentences(int64_t nwords) {
  std::vector<std::string_view> w;
  std::vector<bool> pe;
  noise_words(nwords, w, pe);
  return to_sentences(w, pe);
}

std::vector<Elem> noise_paragraphs(int64_t n) {
  return std::vector<Elem>(size_t(n), Elem{kNoise, '\n'});
}

std::vector<Elem> prose_sentences(uint64_t seed, int64_t nwords) {
  Rng r(sub_seed(seed, 77));
  std::vector<std::string> store;  // owns the words
  while (int64_t(store.size()) < nwords)
    for (auto& w : prose_sentence(r)) store.push_back(std::move(w));
  store.resize(size_t(nwords));
  std::vector<std::string_view> w(store.begin(), store.end());
  return to_sentences(w, std::vector<bool>(w.size(), false));
}

int64_t slots(const std::vector<Elem>& hay) {
  int64_t n = int64_t(hay.size());
  return n > 0 && hay.back().text.back() != '.' ? n - 1 : n;
}

const std::vector<int>& ruler_depths() {
  static const std::vector<int> d = [] {
    std::vector<int> v;
    for (int i = 0; i < 40; i++) v.push_back(int(std::lround(100.0 * i / 39.0)));  // no ties at .5
    return v;
  }();
  return d;
}

int64_t depth_slot(int64_t S, int depth_percent) {
  return int64_t(double(S) * (double(depth_percent) / 100.0));  // Python's int(S * (d / 100))
}

int64_t depth_boundary(double depth, int64_t n) {
  return std::clamp<int64_t>(int64_t(std::llround(depth * double(n))), 0, n);
}

}  // namespace topk::tasks
