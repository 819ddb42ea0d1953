// Shared pieces of the task generators: the draft a builder returns, the length search,
// haystacks and random values. Not part of the tasks API.
#pragma once
#include <functional>
#include <initializer_list>
#include <string_view>
#include <string>
#include <vector>

#include "core/rng.h"
#include "tasks/tasks.h"

namespace topk::tasks {

// What a builder produces for a given number of haystack units.
struct Draft {
  std::string prompt, answer_prefix, target;
  std::vector<std::string> gold;
  int64_t context_begin = 0, context_end = 0;
  std::vector<std::pair<int64_t, int64_t>> needles;  // byte spans in prompt
};

// Builds the example with `units` haystack units. Must be a pure function of `units` (it
// reseeds its own Rng from the example seed on every call).
using BuildFn = std::function<Draft(int64_t units)>;

// Finds the largest unit count in [min_units, max_units] that fits cfg.length, builds it and
// fills token counts and needle positions. Throws topk::Error naming the task and the minimum
// length when even min_units does not fit.
Example fit(const char* task, Scorer scorer, const Config& cfg, const Tokenizer& tok,
            int64_t min_units, int64_t max_units, const BuildFn& build);

// Seeds for independent streams of one example (content, haystack, positions, ...).
uint64_t sub_seed(uint64_t seed, uint64_t stream);

// --- haystack elements: text plus the separator that follows it ('\n' or ' ') ---
struct Elem {
  std::string text;
  char sep = ' ';
  int item = -1;  // >= 0: index of an inserted item (a needle); -1: haystack
};

// Inserts items[i] before haystack element at[i] (at[i] in [0, hay.size()]; equal positions
// keep the items' order) and joins. spans[i] is item i's byte span in the returned text.
std::string assemble(const std::vector<Elem>& hay, const std::vector<int64_t>& at,
                     const std::vector<Elem>& items, std::vector<std::pair<int64_t, int64_t>>& spans);

// The RULER noise paragraph.
extern const char* const kNoise;
// The first n words of kNoise repeated, as sentences; a paragraph's last sentence has sep '\n'.
std::vector<Elem> noise_sentences(int64_t nwords);
// The same words as lines (one paragraph per line, the last possibly partial).
std::vector<Elem> noise_lines(int64_t nwords);
// n words of generated prose (a seeded sentence grammar), as sentences in paragraphs.
std::vector<Elem> prose_sentences(uint64_t seed, int64_t nwords);

// Position of an item among n+1 boundaries: round(depth * n) for depth >= 0, else uniform.
int64_t boundary(Rng& r, double depth, int64_t n);
// Insertion slots of a haystack: its size, less one when it ends in a cut sentence or line,
// so that nothing is inserted after a fragment ("... The sky One of the special ...").
int64_t slots(const std::vector<Elem>& hay);

// --- random values ---
std::string key_words(Rng& r);               // "adjective-noun"
std::string digits(Rng& r, int n);           // n digits, no leading zero
std::string uuid4(Rng& r);                   // 8-4-4-4-12 lowercase hex, version 4
std::string letters(Rng& r, int n, bool upper);
// Lowercase words of 3..6 letters from the system word list (Debian package wamerican-small,
// /usr/share/dict/american-english-small; TOPK_WORDLIST overrides the path), less a few vulgar
// words. Throws topk::Error naming the package when the file is missing.
const std::vector<std::string>& dictionary_words();

// RULER's query join: "a"; "a, and b"; "a, b, and c".
std::string join_and(const std::vector<std::string>& v);
std::string join(const std::vector<std::string>& v, const char* sep);
// Concatenation by appends (GCC 12 warns falsely on some `literal + std::string` chains).
inline std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (auto p : parts) s += p;
  return s;
}
template <class T> void shuffle(Rng& r, std::vector<T>& v) {
  for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[r.below(i)]);
}

// --- the generators (one file each family) ---
struct NiahSpec {
  const char* name;
  enum Hay { noise, essay, needle } hay;
  bool uuid_keys, uuid_values;
  int k, v, q;  // keys inserted, values per key, keys queried
};
Example generate_niah(const NiahSpec& sp, const Config& cfg, const Tokenizer& tok);
Example generate_vt(const Config& cfg, const Tokenizer& tok);
Example generate_cwe(const Config& cfg, const Tokenizer& tok);
Example generate_fwe(const Config& cfg, const Tokenizer& tok);
Example generate_json_kv(const Config& cfg, const Tokenizer& tok);
Example generate_passkey(const Config& cfg, const Tokenizer& tok);
Example generate_mqar(const Config& cfg, const Tokenizer& tok);
Example generate_ar(const Config& cfg, const Tokenizer& tok);

}  // namespace topk::tasks
