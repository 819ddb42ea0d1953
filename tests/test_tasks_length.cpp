// Task length control: every task fits its target (never over, within a stated tolerance) on a
// grid of lengths and in every mode, with the gold at the recorded needle positions, in the
// tokens of the tokenizer given, and with few encodes of the full prompt.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "core/rng.h"
#include "test_tasks_util.h"
#include "topk/core.h"

using namespace topk::tasks;
using topk::test::check_example;
using topk::test::EncodeStats;
using topk::test::run_tokenizer;
using topk::test::word_tokenizer;

static std::vector<Mode> modes_of(const TaskInfo& t) {
  return t.standard == Mode::compact ? std::vector<Mode>{Mode::compact}
                                     : std::vector<Mode>{t.standard, Mode::compact};
}

TEST(TasksLength, GridWithByteTokenizer) {
  Tokenizer tok = byte_tokenizer();
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& info : task_list()) {
    std::string t = info.name;
    // Small models get every task at 1K tokens in compact mode (cwe at 1.1K), passkey and MQAR
    // at 256.
    EXPECT_LE(min_length(t, tok, 0, Mode::compact), t == "cwe" ? 1100 : 1024) << t;
    if (t == "passkey" || t == "mqar") {
      EXPECT_LE(min_length(t, tok, 0, Mode::compact), 256) << t;
    }
    for (Mode m : modes_of(info))
      for (int64_t len : {256, 1024, 4096, 16384}) {
        Config c;
        c.length = len;
        c.seed = uint64_t(len) + 1;
        c.mode = m;
        int64_t min = min_length(t, tok, c.seed, m);
        // (RULER's cwe from 4K repeats the common words 30 times, sized for a BPE: 4.2K bytes,
        // 7K in ruler mode. At 4096 bytes it takes the smaller frequencies, which fit.)
        if (len < min) {
          EXPECT_THROW(generate(t, c, tok), topk::Error) << t << " @" << len;
          continue;
        }
        Example e = generate(t, c, tok);
        EXPECT_EQ(e.mode, m);
        check_example(e, tok, 128);
        for (const auto& n : e.needles) EXPECT_EQ(n.token_begin, 1 + n.char_begin);
      }
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 30.0) << "generation should stay fast";
}

// RULER's lengths are a model's tokens: at 4K-128K with a word-level tokenizer every RULER and
// HELMET task fits in its standard mode.
TEST(TasksLength, RulerGridWithWordTokenizer) {
  Tokenizer tok = word_tokenizer();
  for (const auto& info : task_list())
    for (int64_t len : {4096, 8192, 16384, 32768, 65536}) {
      Config c;
      c.length = len;
      c.seed = 11;
      check_example(generate(info.name, c, tok), tok, 24);
    }
}

TEST(TasksLength, SeedsAndBudgets) {
  Tokenizer tok = byte_tokenizer();
  for (const char* t : {"niah_single_1", "vt", "fwe", "passkey"}) {
    for (uint64_t seed = 0; seed < 5; seed++) {
      Config c;
      c.length = 3000;
      c.seed = seed;
      c.answer_tokens = 128;
      Example e = generate(t, c, tok);
      EXPECT_EQ(e.answer_tokens, 128);
      check_example(e, tok, 128);
    }
  }
}

// Positions from token starts (one encode) equal those from prefix encodes, for a tokenizer
// whose tokens never span a needle's edge.
TEST(TasksLength, TokenStartsGiveTheSamePositions) {
  Tokenizer a = word_tokenizer(), b = word_tokenizer();
  a.starts = nullptr;
  for (const char* t : {"niah_multivalue", "vt", "cwe", "fwe", "json_kv", "mqar"}) {
    Config c;
    c.length = 4096;
    c.seed = 5;
    Example x = generate(t, c, a), y = generate(t, c, b);
    ASSERT_EQ(x.needles.size(), y.needles.size()) << t;
    for (size_t i = 0; i < x.needles.size(); i++) {
      EXPECT_EQ(x.needles[i].token_begin, y.needles[i].token_begin) << t;
      EXPECT_EQ(x.needles[i].token_end, y.needles[i].token_end) << t;
    }
  }
}

// make_tokenizer: starts from the pieces' byte lengths when they spell the text; none (and
// prefix encodes) when they do not.
TEST(TasksLength, TokenizerFromCallbacks) {
  Tokenizer w = word_tokenizer();
  // Tokens of the word tokenizer with the whitespace before each word attached: pieces spell
  // the text. Token ids here are the piece lengths; BOS (id 0) covers nothing.
  auto encode = [](std::string_view s) {
    std::vector<int32_t> ids{0};
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i;
      while (j < s.size() && std::isspace((unsigned char)s[j])) j++;
      while (j < s.size() && !std::isspace((unsigned char)s[j])) j++;
      ids.push_back(int32_t(j - i));
      i = j;
    }
    return ids;
  };
  Tokenizer t = make_tokenizer("spaced words", encode, [](int32_t id) { return int64_t(id); });
  EXPECT_EQ(t.n_bos, 1);
  EXPECT_FALSE(t.byte_level);
  EXPECT_EQ(t.starts("ab  cd"), (std::vector<int64_t>{-1, 0, 2}));
  Config c;
  c.length = 8192;
  c.seed = 2;
  Example e = generate("niah_multiquery", c, t);
  check_example(e, t, 24, false);
  for (const auto& n : e.needles) {  // the token holding the needle's first byte
    int64_t before = int64_t(encode(std::string_view(e.prompt).substr(0, size_t(n.char_begin))).size());
    EXPECT_EQ(n.token_begin, before - 1);
  }
  Tokenizer bad = make_tokenizer("short pieces", encode, [](int32_t id) { return int64_t(id > 0 ? id - 1 : 0); });
  EXPECT_TRUE(bad.starts("ab cd").empty());
  Example f = generate("niah_multiquery", c, bad);  // positions by prefix encodes
  for (const auto& n : f.needles)
    EXPECT_EQ(n.token_begin, int64_t(encode(std::string_view(f.prompt).substr(0, size_t(n.char_begin))).size()));
  EXPECT_THROW(make_tokenizer("none", nullptr), topk::Error);
}

TEST(TasksLength, OtherTokenizer) {
  Tokenizer tok = run_tokenizer();
  for (const auto& info : task_list()) {
    std::string t = info.name;
    for (Mode m : modes_of(info))
      for (int64_t len : {1024, 4096}) {
        Config c;
        c.length = len;
        c.seed = 3;
        c.mode = m;
        if (len < min_length(t, tok, 3, m)) continue;
        check_example(generate(t, c, tok), tok, 64);  // a line: ~40 of these tokens
      }
  }
  EXPECT_LT(min_length("passkey", tok), min_length("passkey", byte_tokenizer()));
}

// Lengths off the grid, with depths, for every task and mode: never over, within tolerance.
TEST(TasksLength, RandomLengthsAndDepths) {
  Tokenizer tok = byte_tokenizer();
  topk::Rng r(2024);
  for (const auto& info : task_list()) {
    std::string t = info.name;
    for (int i = 0; i < 12; i++) {
      Config c;
      c.seed = r.next();
      c.mode = modes_of(info)[r.below(modes_of(info).size())];
      c.length = min_length(t, tok, c.seed, c.mode) + int64_t(r.below(20000));
      if (info.has_depth && r.below(2)) c.depth = r.uniform();
      check_example(generate(t, c, tok), tok, 128);
    }
  }
}

// The length search encodes the full prompt a handful of times, not hundreds: at 128K tokens
// every task reads at most 12 prompts' worth of text through encode (probes of the least
// content and the worked examples included).
TEST(TasksLength, FewEncodesAtLongLengths) {
  for (const auto& info : task_list()) {
    auto stats = std::make_shared<EncodeStats>();
    Tokenizer tok = word_tokenizer(stats);
    Config c;
    c.length = 131072;
    c.seed = 4;
    Example e = generate(info.name, c, tok);
    const double prompts = double(stats->bytes) / double(e.prompt.size());
    std::printf("%-16s %3lld encodes, %5.2f prompts of text\n", info.name, (long long)stats->calls.load(), prompts);
    EXPECT_LE(prompts, 12.0) << info.name;
  }
}
