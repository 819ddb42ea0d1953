// Helpers of the task tests: stand-in tokenizers and the checks every generated example must pass.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <memory>
#include <string>

#include "tasks/tasks.h"

namespace topk::test {

using namespace topk::tasks;

// Counts of the calls a tokenizer receives (shared by its copies).
struct EncodeStats {
  std::atomic<int64_t> calls{0}, bytes{0};
};

// A word-level tokenizer: BOS, then one token per whitespace-separated word, which is about
// what a BPE tokenizer gives on this English-like text (~4-6 bytes a token). With `starts`.
inline Tokenizer word_tokenizer(std::shared_ptr<EncodeStats> stats = nullptr) {
  Tokenizer t;
  t.name = "words";
  t.n_bos = 1;
  auto enc = [stats](std::string_view s) {
    if (stats) stats->calls++, stats->bytes += int64_t(s.size());
    std::vector<int32_t> ids{0};
    for (size_t i = 0; i < s.size();) {
      while (i < s.size() && std::isspace((unsigned char)s[i])) i++;
      if (i == s.size()) break;
      size_t j = i;
      while (j < s.size() && !std::isspace((unsigned char)s[j])) j++;
      ids.push_back(int32_t(j - i));
      i = j;
    }
    return ids;
  };
  t.encode = enc;
  t.starts = [](std::string_view s) {
    std::vector<int64_t> st{-1};
    for (size_t i = 0; i < s.size();) {
      while (i < s.size() && std::isspace((unsigned char)s[i])) i++;
      if (i == s.size()) break;
      st.push_back(int64_t(i));
      while (i < s.size() && !std::isspace((unsigned char)s[i])) i++;
    }
    return st;
  };
  return t;
}

// A finer tokenizer: BOS, then one token per run of letters, per run of digits, and per other
// byte (no starts: positions come from prefix encodes).
inline Tokenizer run_tokenizer() {
  Tokenizer t;
  t.name = "runs";
  t.n_bos = 1;
  t.encode = [](std::string_view s) {
    std::vector<int32_t> ids{0};
    auto cls = [](char c) { return std::isalpha((unsigned char)c) ? 1 : std::isdigit((unsigned char)c) ? 2 : 0; };
    for (size_t i = 0; i < s.size();) {
      size_t j = i + 1;
      if (cls(s[i]))
        while (j < s.size() && cls(s[j]) == cls(s[i])) j++;
      ids.push_back(int32_t(j - i));
      i = j;
    }
    return ids;
  };
  return t;
}

// Tasks whose haystack unit is a whole line (a noise paragraph, a distractor needle, a JSON
// pair) rather than a word.
inline bool line_unit(const std::string& t) {
  return t == "niah_single_1" || t == "niah_multikey_2" || t == "niah_multikey_3" || t == "vt" ||
         t == "json_kv";
}

// The most unused tokens the length search may leave (docs/tasks.md, "Length control"):
// max(16, 2% of the length) for word units; one line for line units (`line` tokens: 128 bytes,
// 24 words); for fwe in ruler mode one of RULER's steps of (length - 50) / 32 words; none for
// json_kv in helmet mode, whose pair count is HELMET's, not the length's.
inline int64_t tolerance(const Example& e, int64_t line) {
  const int64_t len = e.target_tokens, tol = std::max<int64_t>(16, len / 50);
  if (e.task == "json_kv" && e.mode == Mode::helmet) return len;
  if (e.task == "fwe" && e.mode == Mode::ruler) return std::max(tol, (len - 50) / 32 * line / 12);
  return line_unit(e.task) ? std::max(tol, line) : tol;
}

// The length rule, the token counts, and the needles: inside the context, each holding a gold
// string, every gold string in one, token positions those of prefix encodes.
inline void check_example(const Example& e, const Tokenizer& tok, int64_t line, bool positions = true) {
  const std::string& t = e.task;
  const int64_t len = e.target_tokens;
  EXPECT_LE(e.total_tokens(), len) << t << " @" << len;
  EXPECT_LE(len - e.total_tokens(), tolerance(e, line)) << t << " @" << len;
  EXPECT_EQ(e.prompt_tokens, int64_t(tok.encode(e.prompt + e.answer_prefix).size())) << t;
  EXPECT_NE(e.mode, Mode::standard);
  ASSERT_FALSE(e.needles.empty()) << t;
  ASSERT_FALSE(e.gold.empty()) << t;
  EXPECT_GE(e.context_begin, 0);
  EXPECT_LE(e.context_end, int64_t(e.prompt.size()));
  std::vector<bool> seen(e.gold.size());
  // Token positions by prefix encodes: for at most 12 needles, spread over the list.
  const size_t every = std::max<size_t>(1, e.needles.size() / 12);
  for (size_t i = 0; i < e.needles.size(); i++) {
    const Needle& n = e.needles[i];
    ASSERT_GE(n.char_begin, e.context_begin) << t;
    ASSERT_LE(n.char_end, e.context_end) << t;
    std::string s = e.prompt.substr(size_t(n.char_begin), size_t(n.char_end - n.char_begin));
    bool any = false;
    for (size_t g = 0; g < e.gold.size(); g++)
      if (s.find(e.gold[g]) != std::string::npos) seen[g] = any = true;
    EXPECT_TRUE(any) << t << ": needle '" << s << "' holds no gold";
    if (positions && (i % every == 0 || i + 1 == e.needles.size())) {
      EXPECT_EQ(n.token_begin, int64_t(tok.encode(std::string_view(e.prompt).substr(0, size_t(n.char_begin))).size()));
    }
    EXPECT_LT(n.token_begin, n.token_end);
    EXPECT_LE(n.token_end, e.prompt_tokens);
  }
  for (size_t g = 0; g < e.gold.size(); g++) EXPECT_TRUE(seen[g]) << t << ": gold " << e.gold[g];
  EXPECT_DOUBLE_EQ(score(e.scorer, e.target, e.gold), 100.0) << t;
}

}  // namespace topk::test
