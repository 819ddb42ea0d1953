// Finite pools drawn without repetition (a seeded permutation, so no draw ever retries), random
// values, the system word list for cwe, and string joins.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>

#include "tasks/internal.h"
#include "tasks/words.h"
#include "topk/core.h"

namespace topk::tasks {

namespace {

uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

Permutation::Permutation(uint64_t n, uint64_t seed) : n_(n) {
  TOPK_ASSERT(n > 0 && n <= (uint64_t(1) << 62));
  while ((uint64_t(1) << (2 * half_bits_)) < n) half_bits_++;
  half_mask_ = (uint64_t(1) << half_bits_) - 1;
  Rng r(seed);
  for (auto& k : keys_) k = r.next();
}

// A balanced Feistel network on 2 * half_bits bits: a bijection of [0, 4^half_bits).
uint64_t Permutation::enc(uint64_t x) const {
  uint64_t l = x >> half_bits_, r = x & half_mask_;
  for (uint64_t k : keys_) {
    uint64_t t = l ^ (mix(r ^ k) & half_mask_);
    l = r;
    r = t;
  }
  return (l << half_bits_) | r;
}

// Cycle walking: the domain is under 4 n, so a few steps on average; it always ends, since the
// walk follows a cycle of a bijection through i itself.
uint64_t Permutation::at(uint64_t i) const {
  TOPK_ASSERT(i < n_);
  uint64_t x = enc(i);
  while (x >= n_) x = enc(x);
  return x;
}

// Floyd's algorithm (exactly k draws), then a shuffle for a random order.
std::vector<int64_t> sample_distinct(Rng& r, int64_t m, int64_t k) {
  TOPK_ASSERT(k >= 0 && k <= m);
  std::set<int64_t> chosen;
  std::vector<int64_t> out;
  for (int64_t j = m - k; j < m; j++) {
    int64_t t = int64_t(r.below(uint64_t(j + 1)));
    int64_t v = chosen.count(t) ? j : t;
    chosen.insert(v);
    out.push_back(v);
  }
  shuffle(r, out);
  return out;
}

uint64_t key_pool_size() { return uint64_t(kAdjectives.size()) * uint64_t(kNouns.size()); }

std::string key_at(uint64_t index) {
  TOPK_ASSERT(index < key_pool_size());
  return cat({kAdjectives[index / kNouns.size()], "-", kNouns[index % kNouns.size()]});
}

std::string number_at(uint64_t index) {
  TOPK_ASSERT(index < kNumberPool);
  return std::to_string(1000000 + index);
}

uint64_t pow26(int n) {
  uint64_t p = 1;
  for (int i = 0; i < n; i++) p *= 26;
  return p;
}

std::string letters_at(uint64_t index, int n, bool upper) {
  std::string s(size_t(n), 'a');
  for (int i = n - 1; i >= 0; i--, index /= 26) s[size_t(i)] = char((upper ? 'A' : 'a') + index % 26);
  return s;
}

std::string digits(Rng& r, int n) {
  std::string s(size_t(n), '0');
  s[0] = char('1' + r.below(9));
  for (int i = 1; i < n; i++) s[size_t(i)] = char('0' + r.below(10));
  return s;
}

std::string uuid4(Rng& r) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; i++) {
    int v = int(r.below(16));
    if (i == 12) v = 4;              // version
    if (i == 16) v = 8 + (v & 3);    // variant 10xx
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    s += hex[v];
  }
  return s;
}

std::string fresh_uuid(Rng& r, std::set<std::string>& used) {
  for (int i = 0; i < 64; i++) {
    std::string s = uuid4(r);
    if (used.insert(s).second) return s;
  }
  TOPK_CHECK(false, "64 random UUIDs in a row were repeats (a broken random stream?)");
  return {};
}

std::string letters(Rng& r, int n, bool upper) {
  std::string s;
  for (int i = 0; i < n; i++) s += char((upper ? 'A' : 'a') + r.below(26));
  return s;
}

const std::vector<std::string>& dictionary_words() {
  static const std::vector<std::string> words = [] {
    const char* env = std::getenv("TOPK_WORDLIST");
    std::string path = env && *env ? env : "/usr/share/dict/american-english-small";
    std::ifstream f(path);
    TOPK_CHECK(f.good(),
               "word list %s not found: install the Debian package 'wamerican-small' "
               "(tools/install-deps.sh does), or set TOPK_WORDLIST to a file of one word per line",
               path.c_str());
    // Vulgar and loaded words are left out of generated lists.
    static const std::set<std::string_view> excluded = {
        "anal", "anus", "ass", "asses", "bitch", "bitches", "booby", "boobies", "butt", "butts",
        "cock", "cocks", "crap", "cum", "damn", "damned", "dildo", "faggot", "gay", "horny",
        "kinky", "nigger", "niggers", "orgasm", "orgy", "penis", "prick", "pussy", "queer",
        "rape", "raped", "rapes", "rapist", "scrotum", "semen", "sex", "sexy", "slut", "sluts",
        "smut", "sperm", "testicle", "tit", "tits", "vagina", "whore", "whores"};
    std::vector<std::string> out;
    std::string w;
    while (std::getline(f, w)) {
      bool ok = w.size() >= 3 && w.size() <= 10 && !excluded.count(w);
      for (char c : w) ok = ok && c >= 'a' && c <= 'z';
      if (ok) out.push_back(w);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    TOPK_CHECK(out.size() >= 1000, "word list %s has only %zu lowercase words of 3..10 letters; "
               "need at least 1000", path.c_str(), out.size());
    return out;
  }();
  return words;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) {
    if (i) s += sep;
    s += v[i];
  }
  return s;
}

std::string join_and(const std::vector<std::string>& v) {
  if (v.size() <= 1) return v.empty() ? "" : v[0];
  std::vector<std::string> head(v.begin(), v.end() - 1);
  return join(head, ", ") + ", and " + v.back();
}

}  // namespace topk::tasks
