// Shared pieces of the task generators: the draft a builder returns, the length search,
// haystacks, finite pools and random values. Not part of the tasks API.
#pragma once
#include <functional>
#include <initializer_list>
#include <set>
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
  int64_t units = -1;  // what Example::units reports; < 0: the unit count searched
};

// Builds the example with `units` haystack units. Must be a pure function of `units` (it
// reseeds its own Rng from the example seed on every call).
using BuildFn = std::function<Draft(int64_t units)>;

inline constexpr int64_t kUnbounded = int64_t(1) << 40;

struct FitSpec {
  int64_t min_units = 1;
  // The most units the content allows (a finite pool of keys or words): the builder is never
  // asked for more. When the length needs more, generate() fails naming the largest length
  // the pool reaches, unless `cap` says the count is intended (HELMET's pair counts).
  int64_t max_units = kUnbounded;
  bool cap = false;
  const char* pool = nullptr;  // what runs out, for that message ("adjective-noun keys")
  int64_t budget = -1;         // the mode's answer budget; < 0: the target's own tokens
};

// Finds the largest unit count in [min_units, max_units] whose example fits cfg.length, in a
// few encodes (per-unit cost estimated from the probes, then interpolation inside the
// bracket), builds it and fills token counts and needle positions. Throws topk::Error naming
// the task and the least length when even min_units does not fit.
Example fit(const char* task, Mode mode, Scorer scorer, const Config& cfg, const Tokenizer& tok,
            const FitSpec& spec, const BuildFn& build);

// Tokens of a text without the BOS the tokenizer prepends.
int64_t text_tokens(const Tokenizer& tok, std::string_view s);
// Whether a worked example of `tokens` tokens goes into the prompt: always in ruler and helmet
// modes, in compact mode when it takes at most a quarter of the length.
bool keep_worked_example(Mode mode, int64_t tokens, int64_t length);

// Seeds for independent streams of one example (content, haystack, positions, ...).
uint64_t sub_seed(uint64_t seed, uint64_t stream);

// --- finite pools, drawn without repetition and without retries ---
// A seeded pseudo-random permutation of [0, n): at(0), at(1), ... are distinct, and the first
// k of them do not depend on how many are drawn later. O(1) memory and time per draw (a
// Feistel network on the next power of 4, cycle-walked into [0, n)).
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t seed);
  uint64_t size() const { return n_; }
  uint64_t at(uint64_t i) const;

 private:
  uint64_t enc(uint64_t x) const;
  uint64_t n_ = 0, half_mask_ = 0, keys_[6] = {};
  int half_bits_ = 1;
};

// k distinct values of [0, m) in random order (Python's random.sample(range(m), k)). k <= m.
std::vector<int64_t> sample_distinct(Rng& r, int64_t m, int64_t k);

// "adjective-noun" keys (RULER's key form); index in [0, key_pool_size()).
uint64_t key_pool_size();
std::string key_at(uint64_t index);
// 7-digit numbers 1000000..9999999; index in [0, 9000000).
inline constexpr uint64_t kNumberPool = 9000000;
std::string number_at(uint64_t index);
// n letters (base 26) of index in [0, 26^n).
std::string letters_at(uint64_t index, int n, bool upper);
uint64_t pow26(int n);

// --- haystacks: elements with the separator that follows each ('\n' or ' ') ---
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
// n copies of kNoise, one per line (RULER's noise haystack; a unit is one paragraph).
std::vector<Elem> noise_paragraphs(int64_t n);
// The first n words of kNoise repeated, as sentences (passkey's filler; a unit is one word).
std::vector<Elem> noise_sentences(int64_t nwords);
// n words of generated prose (a seeded sentence grammar) as sentences joined by single spaces
// (RULER's essay haystack has its whitespace collapsed); the last sentence may be cut.
std::vector<Elem> prose_sentences(uint64_t seed, int64_t nwords);
// Insertion slots of a sentence haystack: its size, less one when it ends in a cut sentence,
// so that nothing is inserted after a fragment ("... The sky One of the special ...").
int64_t slots(const std::vector<Elem>& hay);

// RULER's needle depths: np.round(np.linspace(0, 100, 40)), as percentages.
const std::vector<int>& ruler_depths();
// RULER's slot for a depth percentage among S sentences: int(S * (depth / 100)).
int64_t depth_slot(int64_t S, int depth_percent);
// The slot of an explicit depth in [0, 1] among n + 1 boundaries: round(depth * n).
int64_t depth_boundary(double depth, int64_t n);

// --- random values ---
std::string digits(Rng& r, int n);           // n digits, no leading zero
std::string uuid4(Rng& r);                   // 8-4-4-4-12 lowercase hex, version 4
// A UUID not in `used` (then added). The pool has 2^122 values, so a repeat is a one in 2^100
// event; the bound of 64 tries only guarantees termination.
std::string fresh_uuid(Rng& r, std::set<std::string>& used);
std::string letters(Rng& r, int n, bool upper);
// Lowercase words of 3..10 letters from the system word list (Debian package wamerican-small,
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

// --- the generators (one file each family); mode already resolved ---
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
