// Synthetic long-context tasks (RULER NIAH family, variable tracking, CWE, FWE, HELMET JSON KV,
// passkey, MQAR): deterministic generators and RULER scorers. See docs/tasks.md.
//
// Every generator is a pure function of (task, Config, Tokenizer): the same inputs give the
// same Example on every machine (topk::Rng only, never std:: distributions).
// Length rule: tokens(prompt + answer_prefix) + answer_tokens <= Config::length, as close as
// the task's haystack unit allows (the number of units is binary-searched).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace topk::tasks {

// Bumped whenever a prompt's wording, a haystack or a length rule changes.
inline constexpr int kFormatVersion = 1;

// Longest target length accepted (16M tokens).
inline constexpr int64_t kMaxLength = int64_t(1) << 24;

enum class Scorer : uint8_t {
  match_all,   // RULER string_match_all: 100 * fraction of gold strings found in the prediction
  match_part,  // RULER string_match_part: 100 if any gold string is found, else 0
};
const char* scorer_name(Scorer s);

// The evaluated model's tokenizer, as plain callbacks (no model type).
//  encode: the ids the model sees for a whole text, including any BOS it prepends.
//  starts: optional; for each token of encode(s), the byte offset where it starts (-1 for
//          tokens that cover no text, such as BOS). With it, needle positions come from one
//          pass over the prompt: token_begin is the token holding the needle's first byte,
//          token_end the first token starting at or after its end. Without it they are
//          encode(prompt[0, offset)).size(), the same whenever no token spans the offset.
//  byte_level: set when encode(s).size() == n_bos + s.size() for every s (counts are free).
struct Tokenizer {
  std::string name;
  std::function<std::vector<int32_t>(std::string_view)> encode;
  std::function<std::vector<int64_t>(std::string_view)> starts;
  bool byte_level = false;
  int n_bos = 0;
};

// The project's byte-level tokenizer: BOS (id 256) then one token per byte (ids 0..255).
Tokenizer byte_tokenizer();

// A span of the prompt that the answer depends on (the gold needle, a chain assignment, an
// occurrence of a frequent word, a queried pair).
struct Needle {
  int64_t char_begin = 0, char_end = 0;    // [begin, end) byte offsets in Example::prompt
  int64_t token_begin = 0, token_end = 0;  // token positions in the encoded prompt (BOS counted)
};

struct Example {
  std::string task;
  int version = kFormatVersion;
  uint64_t seed = 0;
  double depth = -1;            // requested needle depth in [0, 1]; -1: random
  int64_t target_tokens = 0;    // requested length (Config::length)
  int64_t prompt_tokens = 0;    // tokens of prompt + answer_prefix, BOS included
  int64_t answer_tokens = 0;    // answer budget counted in the length
  int64_t units = 0;            // haystack units chosen by the length search
  std::string prompt;           // context and question
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
  int64_t answer_tokens = -1;  // answer budget; <0: tokens of the canonical target
};

struct TaskInfo {
  const char* name;
  const char* summary;
  Scorer scorer;
  bool has_depth;  // whether Config::depth applies
};

const std::vector<TaskInfo>& task_list();
const TaskInfo* find_task(std::string_view name);  // nullptr when unknown

// Throws topk::Error for an unknown task, a depth outside [0, 1] (or on a task without
// needles to place), or a length below what the task needs with this tokenizer.
Example generate(std::string_view task, const Config& cfg, const Tokenizer& tok = byte_tokenizer());

// Smallest Config::length for which generate() succeeds with this seed (content at its
// minimum; it varies by a few tokens with the seed, as key and value lengths do).
int64_t min_length(std::string_view task, const Tokenizer& tok = byte_tokenizer(), uint64_t seed = 0);

// One example as a single-line JSON object: task, version, seed, depth, length, prompt_tokens,
// answer_tokens, units, prompt, answer_prefix, target, gold, scorer, context [begin, end),
// needles [{chars: [b, e), tokens: [b, e)}].
std::string to_json(const Example& e);
// Writes one JSON line per example to path (through path.tmp and a rename).
void write_jsonl(const std::string& path, const std::vector<Example>& examples);

// RULER scoring; the prediction is stripped, matching is ASCII case-insensitive. In [0, 100].
double string_match_all(std::string_view prediction, const std::vector<std::string>& gold);
double string_match_part(std::string_view prediction, const std::vector<std::string>& gold);
double score(Scorer s, std::string_view prediction, const std::vector<std::string>& gold);

}  // namespace topk::tasks
