// Synthetic long-context tasks (RULER NIAH family, variable tracking, CWE, FWE, HELMET JSON KV,
// passkey, MQAR): deterministic generators and their benchmarks' scorers. See docs/tasks.md.
//
// Every generator is a pure function of (task, Config, Tokenizer): the same inputs give the
// same Example on every machine (topk::Rng only, never std:: distributions).
// Length rule: tokens(prompt + answer_prefix) + answer_tokens <= Config::length, in the tokens of
// the Tokenizer given, as close as the task's haystack unit allows.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace topk::tasks {

// Bumped whenever a prompt's wording, a haystack, a random stream or a length rule changes.
inline constexpr int kFormatVersion = 2;

// Longest target length accepted (16M tokens).
inline constexpr int64_t kMaxLength = int64_t(1) << 24;

enum class Scorer : uint8_t {
  match_all,   // RULER string_match_all: 100 * fraction of gold strings found in the prediction
  match_part,  // RULER string_match_part: 100 if any gold string is found, else 0
  substring_exact_match,  // HELMET: 100 if a normalised gold is a substring of the normalised
                          // prediction (lower case, no punctuation or articles, single spaces)
};
const char* scorer_name(Scorer s);

// Which benchmark's conventions an example follows (docs/tasks.md, "Modes").
//  standard: the task's own benchmark: ruler for RULER's tasks, helmet for json_kv, compact for
//            passkey, mqar and ar;
//  ruler:    RULER's defaults: its answer budgets (NIAH 128, vt 30, cwe 120, fwe 50), a worked
//            example at every length (vt, cwe), its needle depths and length search;
//  helmet:   HELMET's json_kv: context first, 2 worked examples, its pair counts per length,
//            a 100-token budget and its substring_exact_match scorer;
//  compact:  for models of a few hundred tokens: the same prompts, an answer budget of the
//            canonical answer's own tokens, worked examples only where they take at most a
//            quarter of the length, json_kv's pairs filling the length.
enum class Mode : uint8_t { standard, ruler, helmet, compact };
const char* mode_name(Mode m);
// "standard", "ruler", "helmet" or "compact"; throws topk::Error otherwise.
Mode parse_mode(std::string_view s);

// The evaluated model's tokenizer, as plain callbacks (no model type).
//  encode: the ids the model sees for a whole text, including any BOS it prepends.
//  starts: optional; for each token of encode(s), the byte offset where it starts (-1 for
//          tokens that cover no text, such as BOS), or an empty vector when it cannot tell.
//          With it, needle positions come from one encode of the prompt: token_begin is the
//          token holding the needle's first byte, token_end the first token starting at or
//          after its end. Without it they are encode(prompt[0, offset)).size(): one encode of
//          a prefix per needle, slow for long prompts with many needles (cwe, fwe).
//  byte_level: set when encode(s).size() == n_bos + s.size() for every s (counts are free).
//  n_bos: tokens that encode("") gives.
struct Tokenizer {
  std::string name;
  std::function<std::vector<int32_t>(std::string_view)> encode;
  std::function<std::vector<int64_t>(std::string_view)> starts;
  bool byte_level = false;
  int n_bos = 0;
};

// The project's byte-level tokenizer: BOS (id 256) then one token per byte (ids 0..255).
Tokenizer byte_tokenizer();

// A Tokenizer from a model tokenizer's callbacks (e.g. a Hugging Face tokenizer.json):
//  encode:      ids of a whole text, BOS included when the model prepends one;
//  piece_bytes: optional; how many bytes of the text token `id` covers (0 for special tokens
//               such as BOS). When the pieces of encode(s) add up to s.size() (byte-level BPE
//               without normalisation does), token starts follow from them; when they do not
//               (e.g. SentencePiece's added prefix space), starts() answers empty and needle
//               positions fall back to prefix encodes.
// n_bos is taken from encode("").
Tokenizer make_tokenizer(std::string name,
                         std::function<std::vector<int32_t>(std::string_view)> encode,
                         std::function<int64_t(int32_t)> piece_bytes = {});

// A span of the prompt that the answer depends on (the gold needle, a chain assignment, an
// occurrence of a frequent word, a queried pair).
struct Needle {
  int64_t char_begin = 0, char_end = 0;    // [begin, end) byte offsets in Example::prompt
  int64_t token_begin = 0, token_end = 0;  // token positions in the encoded prompt (BOS counted)
};

struct Example {
  std::string task;
  int version = kFormatVersion;
  Mode mode = Mode::standard;   // the mode it was generated in (never standard)
  uint64_t seed = 0;
  double depth = -1;            // requested needle depth in [0, 1]; -1: random
  int64_t target_tokens = 0;    // requested length (Config::length)
  int64_t prompt_tokens = 0;    // tokens of prompt + answer_prefix, BOS included
  int64_t answer_tokens = 0;    // answer budget counted in the length
  int64_t units = 0;            // haystack units chosen by the length search (fwe: its word budget)
  std::string prompt;           // context and question (worked examples first)
  std::string answer_prefix;    // appended after the prompt; generation continues from it
  std::vector<std::string> gold;
  std::string target;           // a canonical correct continuation of answer_prefix
  Scorer scorer = Scorer::match_all;
  int64_t context_begin = 0, context_end = 0;  // byte span of the haystack in the prompt
  std::vector<Needle> needles;  // in prompt order
  int64_t total_tokens() const { return prompt_tokens + answer_tokens; }
};

struct Config {
  int64_t length = 4096;       // target tokens: prompt + answer prefix + answer budget
  uint64_t seed = 0;
  double depth = -1;           // gold needle position as a fraction of the context; <0: random
  int64_t answer_tokens = -1;  // answer budget; <0: the mode's (RULER's, HELMET's or compact)
  Mode mode = Mode::standard;
};

// A task accepts Mode::standard, its own standard mode and Mode::compact.
struct TaskInfo {
  const char* name;
  const char* summary;
  Scorer scorer;    // its benchmark's scorer (in every mode)
  bool has_depth;   // whether Config::depth applies
  Mode standard;    // the mode Mode::standard stands for: ruler, helmet or compact
};

const std::vector<TaskInfo>& task_list();
const TaskInfo* find_task(std::string_view name);  // nullptr when unknown
// The mode an example of `task` gets for `m` (standard resolved); throws topk::Error when the
// task has no such mode (ruler for json_kv, helmet for a RULER task, either for passkey).
Mode resolve_mode(const TaskInfo& task, Mode m);

// Throws topk::Error for an unknown task or mode, a depth outside [0, 1] (or on a task without
// needles to place), a length below what the task needs with this tokenizer, or above what its
// content allows (the message names the largest length it supports).
Example generate(std::string_view task, const Config& cfg, const Tokenizer& tok = byte_tokenizer());

// Smallest Config::length for which generate() succeeds with this seed and mode (content at its
// minimum; it varies by a few tokens with the seed, as key and value lengths do).
int64_t min_length(std::string_view task, const Tokenizer& tok = byte_tokenizer(), uint64_t seed = 0,
                   Mode mode = Mode::standard);

// One example as a single-line JSON object: task, version, mode, seed, depth, length,
// prompt_tokens, answer_tokens, units, prompt, answer_prefix, target, gold, scorer,
// context [begin, end), needles [{chars: [b, e), tokens: [b, e)}].
std::string to_json(const Example& e);
// Writes one JSON line per example to path (through path.tmp and a rename).
void write_jsonl(const std::string& path, const std::vector<Example>& examples);

// RULER scoring: the prediction is stripped, matching is ASCII case-insensitive. In [0, 100].
double string_match_all(std::string_view prediction, const std::vector<std::string>& gold);
double string_match_part(std::string_view prediction, const std::vector<std::string>& gold);
// HELMET's substring exact match (SQuAD normalisation of both sides). 0 or 100.
double substring_exact_match(std::string_view prediction, const std::vector<std::string>& gold);
double score(Scorer s, std::string_view prediction, const std::vector<std::string>& gold);

}  // namespace topk::tasks
