// Every task at RULER's headline length, 128K tokens, with the byte tokenizer and with a
// word-level one (about a BPE's tokens per byte), and the tasks meant for 1M tokens there:
// no hang, the length rule, the needles, and the time it takes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "test_tasks_util.h"
#include "topk/core.h"

using namespace topk::tasks;
using topk::test::check_example;
using topk::test::word_tokenizer;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<std::string> task_names() {
  std::vector<std::string> v;
  for (const auto& t : task_list()) v.push_back(t.name);
  return v;
}

struct LongCase {
  std::string task;
  bool words;  // the word-level tokenizer, else bytes
};

class TasksAt128K : public ::testing::TestWithParam<LongCase> {};

TEST_P(TasksAt128K, FitsWithNeedlesInLinearTime) {
  const LongCase& p = GetParam();
  const Tokenizer tok = p.words ? word_tokenizer() : byte_tokenizer();
  Config c;
  c.length = 131072;
  c.seed = 7;
  auto t0 = std::chrono::steady_clock::now();
  Example e = generate(p.task, c, tok);
  const double s = seconds_since(t0);
  std::printf("%s at 128K %s tokens: %.3f s, %lld units, prompt %lld + answer %lld\n", p.task.c_str(),
              tok.name.c_str(), s, (long long)e.units, (long long)e.prompt_tokens,
              (long long)e.answer_tokens);
  check_example(e, tok, p.words ? 24 : 128);
  // Not a speed target (a second or less alone; 3.6 s under the sanitizers on a loaded 2-core
  // machine): a generator that went quadratic in the length would take minutes here.
  EXPECT_LT(s, 60.0) << p.task << ": generation at 128K tokens should take a second or so";
}

std::vector<LongCase> cases128() {
  std::vector<LongCase> v;
  for (const auto& t : task_names())
    if (t != "ar")  // ar's pairs stop at 52 keys: its queries repeat at any length
      for (bool w : {false, true}) v.push_back({t, w});
  v.push_back({"ar", false});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Tasks, TasksAt128K, ::testing::ValuesIn(cases128()),
                         [](const auto& info) {
                           return info.param.task + (info.param.words ? "_words" : "_bytes");
                         });

// The tasks whose content has no natural end reach a million tokens of the word-level
// tokenizer: the NIAH haystacks (prose, noise, distractor needles from ~350,000 keys), passkey,
// MQAR (26^5 keys) and vt.
class TasksAt1M : public ::testing::TestWithParam<std::string> {};

TEST_P(TasksAt1M, Fits) {
  const Tokenizer tok = word_tokenizer();
  Config c;
  c.length = 1 << 20;
  c.seed = 3;
  auto t0 = std::chrono::steady_clock::now();
  Example e = generate(GetParam(), c, tok);
  std::printf("%s at 1M word tokens: %.3f s, %lld units\n", GetParam().c_str(), seconds_since(t0),
              (long long)e.units);
  check_example(e, tok, 24, false);
}

INSTANTIATE_TEST_SUITE_P(Tasks, TasksAt1M,
                         ::testing::Values("niah_single_1", "niah_single_2", "niah_multikey_2",
                                           "niah_multikey_3", "passkey", "mqar", "vt"),
                         [](const auto& info) { return info.param; });

}  // namespace
