// Task generators: determinism, content semantics, depth control; scorers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tasks/internal.h"
#include "tasks/tasks.h"
#include "test_tasks_util.h"
#include "topk/core.h"

using namespace topk::tasks;

static Example gen(const std::string& task, int64_t length, uint64_t seed, double depth = -1,
                   Mode mode = Mode::standard) {
  Config c;
  c.length = length;
  c.seed = seed;
  c.depth = depth;
  c.mode = mode;
  return generate(task, c);
}

static std::string span(const Example& e, const Needle& n) {
  return e.prompt.substr(size_t(n.char_begin), size_t(n.char_end - n.char_begin));
}

TEST(Tasks, ListIsCompleteAndNamesAreUnique) {
  std::set<std::string> names;
  for (const auto& t : task_list()) names.insert(t.name);
  EXPECT_EQ(names.size(), task_list().size());
  for (const char* n : {"niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1",
                        "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery",
                        "vt", "cwe", "fwe", "json_kv", "passkey", "mqar"})
    EXPECT_TRUE(find_task(n)) << n;
  EXPECT_EQ(find_task("niah"), nullptr);
}

TEST(Tasks, SameSeedSameExampleDifferentSeedDifferent) {
  for (const auto& t : task_list()) {
    Example a = gen(t.name, 8192, 11), b = gen(t.name, 8192, 11), c = gen(t.name, 8192, 12);
    EXPECT_EQ(a.prompt, b.prompt) << t.name;
    EXPECT_EQ(a.answer_prefix, b.answer_prefix) << t.name;
    EXPECT_EQ(a.gold, b.gold) << t.name;
    ASSERT_EQ(a.needles.size(), b.needles.size()) << t.name;
    for (size_t i = 0; i < a.needles.size(); i++) {
      EXPECT_EQ(a.needles[i].char_begin, b.needles[i].char_begin) << t.name;
      EXPECT_EQ(a.needles[i].token_begin, b.needles[i].token_begin) << t.name;
    }
    EXPECT_NE(a.prompt, c.prompt) << t.name;
    if (std::string(t.name) != "ar") {  // ar's gold is one digit
      EXPECT_NE(a.gold, c.gold) << t.name;
    }
    EXPECT_EQ(a.version, kFormatVersion);
    EXPECT_EQ(a.task, t.name);
  }
}

// The stream must be the same on every machine and compiler: a change here is a format
// change and needs kFormatVersion bumped (and this digest updated).
TEST(Tasks, FormatIsStableAcrossBuilds) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& t : task_list())
    for (Mode m : {Mode::standard, Mode::compact}) {
      Example e = gen(t.name, 8192, 5, -1, m);
      for (unsigned char ch : e.prompt + e.answer_prefix + e.target) h = (h ^ ch) * 1099511628211ull;
    }
  EXPECT_EQ(kFormatVersion, 2);
  EXPECT_EQ(h, 4859456968844090904ull) << "digest of the version-2 examples changed";
}

TEST(Tasks, NiahWordingFollowsRuler) {
  Example s = gen("niah_single_2", 2048, 3);
  EXPECT_EQ(s.prompt.rfind("A special magic number is hidden within the following text. Make sure "
                           "to memorize it. I will quiz you about the number afterwards.\n", 0), 0u);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(s.prompt, m, std::regex("One of the special magic numbers for "
                                                        "([a-z]+-[a-z]+) is: ([0-9]{7})\\.")));
  EXPECT_EQ(m[2].str(), s.gold.at(0));
  EXPECT_EQ(s.answer_prefix,
            " The special magic number for " + m[1].str() + " mentioned in the provided text is");
  EXPECT_TRUE(s.prompt.ends_with("\nWhat is the special magic number for " + m[1].str() +
                                 " mentioned in the provided text?"));
  Example q = gen("niah_multiquery", 4096, 3);
  EXPECT_EQ(q.gold.size(), 4u);
  EXPECT_TRUE(std::regex_search(q.answer_prefix,
                                std::regex("^ The special magic numbers for [a-z]+-[a-z]+, "
                                           "[a-z]+-[a-z]+, [a-z]+-[a-z]+, and [a-z]+-[a-z]+ "
                                           "mentioned in the provided text are$")));
  Example u = gen("niah_multikey_3", 4096, 3);
  EXPECT_TRUE(std::regex_match(u.gold.at(0), std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                                                        "[89ab][0-9a-f]{3}-[0-9a-f]{12}")));
  Example v = gen("niah_multivalue", 4096, 3);
  EXPECT_EQ(v.gold.size(), 4u);
  EXPECT_EQ(v.needles.size(), 4u);
  // RULER's plural template, byte for byte around the context.
  const size_t kb = v.answer_prefix.find("for ") + 4;
  const std::string key = v.answer_prefix.substr(kb, v.answer_prefix.find(' ', kb) - kb);
  EXPECT_EQ(v.prompt.substr(0, size_t(v.context_begin)),
            "Some special magic numbers are hidden within the following text. Make sure to "
            "memorize it. I will quiz you about the numbers afterwards.\n");
  EXPECT_EQ(v.prompt.substr(size_t(v.context_end)),
            "\nWhat are all the special magic numbers for " + key + " mentioned in the provided text?");
  EXPECT_EQ(v.answer_prefix, " The special magic numbers for " + key + " mentioned in the provided text are");
  // The essay haystack is one line, as RULER's (its whitespace collapsed); noise and needle
  // haystacks are one paragraph or needle a line.
  std::string ctx = v.prompt.substr(size_t(v.context_begin), size_t(v.context_end - v.context_begin));
  EXPECT_EQ(ctx.find('\n'), std::string::npos);
  Example n1 = gen("niah_single_1", 4096, 3);
  std::istringstream lines(n1.prompt.substr(size_t(n1.context_begin), size_t(n1.context_end - n1.context_begin)));
  std::string l;
  int hay = 0;
  while (std::getline(lines, l)) {
    if (l.rfind("One of the special magic numbers for ", 0) == 0) continue;
    EXPECT_EQ(l, "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.");
    hay++;
  }
  EXPECT_EQ(hay, n1.units);
}

// RULER's essay placement: every needle (gold or distractor) at a distinct one of RULER's 40
// depths, slot int(S * depth / 100) of the S sentences, never after a cut last sentence.
TEST(Tasks, NiahEssayNeedlesTakeDistinctRulerDepths) {
  std::set<int64_t> used_depths;
  for (const char* t : {"niah_multikey_1", "niah_multivalue", "niah_multiquery"})
    for (uint64_t seed = 0; seed < 20; seed++) {
      Example e = gen(t, 16384, seed);
      std::string ctx = e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin));
      std::vector<std::string> pieces;  // sentences, needles included; the last maybe cut
      size_t p = 0;
      for (size_t q; (q = ctx.find(". ", p)) != std::string::npos; p = q + 2) pieces.push_back(ctx.substr(p, q + 1 - p));
      pieces.push_back(ctx.substr(p));
      std::vector<int64_t> slot;
      int64_t S = 0;
      for (auto& s : pieces) {
        if (s.rfind("One of the special magic", 0) == 0) slot.push_back(S);
        else S++;
      }
      ASSERT_EQ(slot.size(), 4u) << t;
      const int64_t top = pieces.back().back() == '.' ? S : S - 1;
      std::set<int64_t> distinct(slot.begin(), slot.end());
      EXPECT_EQ(distinct.size(), 4u) << t << " seed " << seed << ": needles share a slot";
      for (int64_t x : slot) {
        bool ok = false;
        for (int i = 0; i < 40; i++) {
          int d = int(std::lround(100.0 * i / 39.0));
          if (x == std::min<int64_t>(top, int64_t(double(S) * (double(d) / 100.0)))) ok = true, used_depths.insert(d);
        }
        EXPECT_TRUE(ok) << t << ": slot " << x << " of " << S << " is no RULER depth";
      }
    }
  EXPECT_GT(used_depths.size(), 30u) << "the 40 depths are all in use";
}

// Modes: the standard one is the task's benchmark; budgets follow it unless set.
TEST(Tasks, ModesAndAnswerBudgets) {
  const std::map<std::string, int64_t> ruler = {
      {"niah_single_1", 128}, {"niah_single_2", 128}, {"niah_single_3", 128},
      {"niah_multikey_1", 128}, {"niah_multikey_2", 128}, {"niah_multikey_3", 128},
      {"niah_multivalue", 128}, {"niah_multiquery", 128}, {"vt", 30}, {"cwe", 120}, {"fwe", 50}};
  const topk::tasks::Tokenizer bytes = byte_tokenizer();
  for (const auto& t : task_list()) {
    Example s = gen(t.name, 8192, 2), r = gen(t.name, 8192, 2, -1, t.standard);
    Example c = gen(t.name, 8192, 2, -1, Mode::compact);
    EXPECT_EQ(s.mode, t.standard) << t.name;
    EXPECT_EQ(s.prompt, r.prompt) << t.name << ": standard is the task's own mode";
    EXPECT_EQ(c.mode, Mode::compact);
    EXPECT_EQ(c.answer_tokens, int64_t(c.target.size())) << t.name << ": compact budget = the answer";
    if (ruler.count(t.name)) {
      EXPECT_EQ(t.standard, Mode::ruler) << t.name;
      EXPECT_EQ(s.answer_tokens, ruler.at(t.name)) << t.name;
      EXPECT_THROW(gen(t.name, 8192, 2, -1, Mode::helmet), topk::Error) << t.name;
    } else if (std::string(t.name) == "json_kv") {
      EXPECT_EQ(t.standard, Mode::helmet);
      EXPECT_EQ(s.answer_tokens, 100);
      EXPECT_THROW(gen(t.name, 8192, 2, -1, Mode::ruler), topk::Error);
    } else {
      EXPECT_EQ(t.standard, Mode::compact) << t.name;
      EXPECT_THROW(gen(t.name, 8192, 2, -1, Mode::ruler), topk::Error) << t.name;
    }
    EXPECT_EQ(s.scorer, t.scorer);
    EXPECT_EQ(c.scorer, t.scorer);
  }
  Config c;
  c.answer_tokens = 77;
  EXPECT_EQ(generate("niah_single_1", c).answer_tokens, 77);
  EXPECT_EQ(parse_mode("helmet"), Mode::helmet);
  EXPECT_EQ(std::string(mode_name(Mode::compact)), "compact");
  EXPECT_THROW(parse_mode("RULER"), topk::Error);
  try {
    gen("passkey", 4096, 0, -1, Mode::helmet);
    FAIL();
  } catch (const topk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("task passkey has no helmet mode"), std::string::npos) << e.what();
  }
}

// RULER puts one worked example first at every length (cwe: 20 words below 4K, 40 from 4K);
// compact mode drops it where it would take over a quarter of the length.
TEST(Tasks, WorkedExamplesAtEveryLength) {
  auto count = [](const std::string& s, const std::string& w) {
    int n = 0;
    for (size_t p = s.find(w); p != std::string::npos; p = s.find(w, p + 1)) n++;
    return n;
  };
  // cwe from 4K needs ~7K bytes: RULER sized its 40-word example for a BPE's tokens, so byte
  // tokens take the 20-word example (and its frequencies) up to there.
  for (int64_t len : {2048, 3000, 4096, 6000, 8192, 32768}) {
    Example v = gen("vt", len, 1), w = gen("cwe", len, 1);
    EXPECT_EQ(count(v.prompt, "Memorize and track the chain(s)"), 2) << len;
    EXPECT_EQ(count(w.prompt, "Below is a numbered list of words."), 2) << len;
    std::string icl = w.prompt.substr(0, w.prompt.find("\nBelow is"));
    EXPECT_NE(icl.find(len < 7168 ? " 20. " : " 40. "), std::string::npos) << len;
    EXPECT_NE(icl.find(" Answer: The top 10 words that appear most often in the list are: 1. "), std::string::npos);
  }
  EXPECT_EQ(count(gen("vt", 3000, 1, -1, Mode::compact).prompt, "Memorize and track"), 1);
  EXPECT_EQ(count(gen("vt", 8192, 1, -1, Mode::compact).prompt, "Memorize and track"), 2);
  EXPECT_EQ(count(gen("cwe", 1800, 1, -1, Mode::compact).prompt, "Below is a numbered"), 1);
}

TEST(Tasks, MultikeyDistractorsNeverAnswer) {
  for (const char* t : {"niah_multikey_1", "niah_multikey_2", "niah_multikey_3"}) {
    Example e = gen(t, 4096, 9);
    // The gold value occurs exactly once in the context.
    size_t occ = 0;
    for (size_t p = e.prompt.find(e.gold[0]); p != std::string::npos; p = e.prompt.find(e.gold[0], p + 1)) occ++;
    EXPECT_EQ(occ, 1u) << t;
    int lines = 0;
    for (size_t p = e.prompt.find("One of the special magic"); p != std::string::npos;
         p = e.prompt.find("One of the special magic", p + 1))
      lines++;
    EXPECT_GE(lines, 4) << t << ": distractor needles expected";
  }
}

// Resolve every "VAR X = ..." line and check that gold is exactly the chain holding the value.
TEST(Tasks, VariableTrackingChainResolves) {
  for (uint64_t seed : {1, 2, 3}) {
    Example e = gen("vt", 8192, seed);
    std::string ctx = e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin));
    std::map<std::string, std::string> val;
    std::regex re("VAR ([A-Z]+) = (VAR ([A-Z]+)|[0-9]+)");
    for (auto it = std::sregex_iterator(ctx.begin(), ctx.end(), re); it != std::sregex_iterator(); ++it) {
      auto& m = *it;
      val[m[1]] = m[3].matched ? val.at(m[3]) : m[2].str();  // statements appear in chain order
    }
    std::string value = e.answer_prefix.substr(e.answer_prefix.find("value ") + 6, 5);
    std::vector<std::string> names;
    for (auto& [k, v] : val)
      if (v == value) names.push_back(k);
    std::vector<std::string> gold = e.gold;
    std::sort(gold.begin(), gold.end());
    EXPECT_EQ(names, gold);
    EXPECT_EQ(e.gold.size(), 5u);
    EXPECT_NE(e.prompt.find("they are:  "), std::string::npos);  // the worked example's answer
    EXPECT_NE(e.answer_prefix.find(" 5 variables are assigned the value " + value + ", they are: "),
              std::string::npos);
    EXPECT_EQ(e.prompt.find("assgined"), std::string::npos) << "RULER's current spelling";
  }
}

// RULER's placement: the five assignments before five distinct noise lines drawn at random
// (so the first is at depth ~1/6 on average, and no two are adjacent), each on its own line,
// the hop lines with RULER's trailing space.
TEST(Tasks, VariableTrackingPlacementFollowsRuler) {
  double first = 0;
  const int n = 200;
  for (int seed = 0; seed < n; seed++) {
    Example e = gen("vt", 16384, uint64_t(seed));
    std::istringstream in(e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin)));
    std::string l;
    std::vector<int64_t> at;  // noise lines before each assignment
    int64_t noise = 0;
    bool last_var = false;
    while (std::getline(in, l)) {
      if (l.rfind("VAR ", 0) == 0) {
        EXPECT_FALSE(last_var) << "two assignments on adjacent lines, seed " << seed;
        EXPECT_TRUE(std::regex_match(l, std::regex(at.empty() ? "VAR [A-Z]{5} = [0-9]{5}" : "VAR [A-Z]{5} = VAR [A-Z]{5} ")))
            << "'" << l << "'";
        at.push_back(noise);
        last_var = true;
      } else {
        noise++;
        last_var = false;
      }
    }
    ASSERT_EQ(at.size(), 5u);
    EXPECT_EQ(noise, e.units);
    EXPECT_LT(at.back(), noise) << "never after the last noise line";
    first += double(at[0]) / double(noise);
  }
  EXPECT_NEAR(first / n, 1.0 / 6.0, 0.03) << "mean depth of the first assignment";
}

static std::map<std::string, int> count_words(const std::string& ctx, bool numbered) {
  std::map<std::string, int> c;
  std::istringstream in(ctx);
  std::string w;
  while (in >> w)
    if (!numbered || !std::isdigit((unsigned char)w[0])) c[w]++;
  return c;
}

TEST(Tasks, CommonWordsAreTheTenMostCommon) {
  // RULER's frequencies: 30 / 3 from 4K tokens where they fit (from about 7K byte tokens), 6 / 1
  // below.
  for (int64_t len : {2048, 4096, 6000, 8192}) {
    Example e = gen("cwe", len, 4);
    auto c = count_words(e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin)), true);
    int fc = len >= 8192 ? 30 : 6, fu = len >= 8192 ? 3 : 1;
    ASSERT_EQ(e.gold.size(), 10u);
    for (auto& g : e.gold) EXPECT_EQ(c[g], fc) << g;
    for (auto& [w, n] : c)
      if (std::find(e.gold.begin(), e.gold.end(), w) == e.gold.end()) {
        EXPECT_EQ(n, fu) << w;
      }
    EXPECT_EQ(e.needles.size(), size_t(10 * fc));
    for (auto& nd : e.needles)
      EXPECT_NE(std::find(e.gold.begin(), e.gold.end(), span(e, nd)), e.gold.end());
  }
}

TEST(Tasks, FrequentWordsFollowZipfRanks) {
  for (int64_t len : {1024, 8192}) {
    Example e = gen("fwe", len, 6);
    auto c = count_words(e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin)), false);
    std::vector<std::pair<int, std::string>> by;
    for (auto& [w, n] : c)
      if (w != "...") by.push_back({n, w});
    std::sort(by.rbegin(), by.rend());
    ASSERT_GE(by.size(), 4u);
    EXPECT_GT(c["..."], by[0].first);
    std::set<std::string> top{by[0].second, by[1].second, by[2].second};
    EXPECT_EQ(top, std::set<std::string>(e.gold.begin(), e.gold.end()));
    EXPECT_GT(by[2].first, by[3].first) << "the answer must be unambiguous";
  }
}

// HELMET's json_kv: the object first (the "lost in the middle" layout), the instruction, two
// worked lookups of other pairs, the key; HELMET's pair counts and budget.
TEST(Tasks, JsonKvFollowsHelmet) {
  const Tokenizer words = topk::test::word_tokenizer();
  Config c;
  c.length = 8192;
  c.seed = 8;
  Example e = generate("json_kv", c, words);
  EXPECT_EQ(e.mode, Mode::helmet);
  EXPECT_EQ(e.scorer, Scorer::substring_exact_match);
  EXPECT_EQ(e.answer_tokens, 100);
  EXPECT_EQ(e.units, 105) << "HELMET's test_k105 at 8K";
  ASSERT_EQ(e.prompt.rfind("JSON data:\n{\"", 0), 0u);
  EXPECT_EQ(e.context_begin, 11);
  std::string body = e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin));
  std::regex pair("\"([0-9a-f-]{36})\": \"([0-9a-f-]{36})\"");
  std::map<std::string, std::string> kv;
  std::istringstream in(body);
  std::string l;
  int n = 0;
  while (std::getline(in, l)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(l, m, std::regex(std::string(n == 0 ? "\\{" : " ") + "(\"[0-9a-f-]{36}\": \"[0-9a-f-]{36}\")" +
                                                  (n + 1 == e.units ? "\\}" : ","))))
        << l;
    std::string rec = m[1];
    ASSERT_TRUE(std::regex_match(rec, m, pair));
    kv[m[1]] = m[2];
    n++;
  }
  EXPECT_EQ(n, e.units);
  std::smatch m;
  std::string tail = e.prompt.substr(size_t(e.context_end));
  ASSERT_TRUE(std::regex_match(tail, m, std::regex(
      "\n\nExtract the value corresponding to the specified key in the JSON object below\\.\n\n"
      "Key: \"([0-9a-f-]{36})\"\nCorresponding value: ([0-9a-f-]{36})\n\n"
      "Key: \"([0-9a-f-]{36})\"\nCorresponding value: ([0-9a-f-]{36})\n\n"
      "Key: \"([0-9a-f-]{36})\"\n"))) << tail;
  EXPECT_EQ(kv.at(m[1]), m[2]);
  EXPECT_EQ(kv.at(m[3]), m[4]);
  EXPECT_NE(m[1], m[3]);
  EXPECT_NE(m[1], m[5]);
  EXPECT_NE(m[3], m[5]);
  EXPECT_EQ(kv.at(m[5]), e.gold[0]);
  EXPECT_EQ(e.answer_prefix, "Corresponding value:");
  // HELMET's counts, linear between its lengths; compact mode fills the length instead.
  for (auto [len, pairs] : std::vector<std::pair<int64_t, int64_t>>{
           {4096, 50}, {16384, 220}, {32768, 440}, {65536, 900}, {131072, 1800}, {12288, 163}}) {
    c.length = len;
    EXPECT_EQ(generate("json_kv", c, words).units, pairs) << len;
  }
  c.length = 8192;
  c.mode = Mode::compact;
  Example f = generate("json_kv", c, words);
  EXPECT_GT(f.units, 3000);
  EXPECT_LT(f.answer_tokens, 100);
  // With a tokenizer that spends more on a pair than Llama-2's, fewer pairs fit: as many as do.
  Example b = gen("json_kv", 131072, 8);
  EXPECT_GT(b.units, 1500);
  EXPECT_LT(b.units, 1800);
  EXPECT_LE(b.total_tokens(), 131072);
}

TEST(Tasks, MqarQueriesMatchPairs) {
  Example e = gen("mqar", 256, 2);
  std::map<std::string, std::string> kv;
  std::regex re("([a-z]{5})=([0-9]{4})");
  std::string ctx = e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin));
  for (auto it = std::sregex_iterator(ctx.begin(), ctx.end(), re); it != std::sregex_iterator(); ++it)
    kv[(*it)[1]] = (*it)[2];
  std::istringstream q(e.prompt.substr(e.prompt.rfind("Query:") + 6));
  std::string k;
  std::vector<std::string> want;
  while (q >> k) want.push_back(kv.at(k));
  EXPECT_EQ(want, e.gold);
  EXPECT_GE(e.units, 12) << "a 256-token MQAR example should hold a dozen pairs or more";
}

TEST(Tasks, DepthPlacesTheGoldNeedle) {
  for (const auto& t : task_list()) {
    if (!t.has_depth) {
      Config c;
      c.length = 4096;
      c.depth = 0.5;
      EXPECT_THROW(generate(t.name, c), topk::Error) << t.name;
      continue;
    }
    for (double d : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      Example e = gen(t.name, 4096, 21, d);
      double len = double(e.context_end - e.context_begin);
      double best = 1e9;
      for (const auto& n : e.needles) {
        double b = double(n.char_begin - e.context_begin) / len, en = double(n.char_end - e.context_begin) / len;
        best = std::min({best, std::fabs(b - d), std::fabs(en - d)});
      }
      EXPECT_LE(best, 0.05) << t.name << " depth " << d;
    }
  }
  Config bad;
  bad.depth = 1.5;
  EXPECT_THROW(generate("passkey", bad), topk::Error);
}

TEST(Tasks, RandomDepthSpreadsOverTheContext) {
  double lo = 1, hi = 0;
  for (uint64_t s = 0; s < 40; s++) {
    Example e = gen("niah_single_2", 2048, s);
    double f = double(e.needles[0].char_begin - e.context_begin) / double(e.context_end - e.context_begin);
    lo = std::min(lo, f), hi = std::max(hi, f);
  }
  EXPECT_LT(lo, 0.2);
  EXPECT_GT(hi, 0.8);
}

TEST(Tasks, Errors) {
  EXPECT_THROW(gen("no_such_task", 1024, 0), topk::Error);
  EXPECT_THROW(gen("niah_single_1", 100, 0), topk::Error);
  EXPECT_THROW(gen("passkey", 0, 0), topk::Error);
  EXPECT_THROW(gen("passkey", kMaxLength + 1, 0), topk::Error);
  try {
    gen("cwe", 1 << 22, 0);
    FAIL() << "the word list cannot fill four million bytes";
  } catch (const topk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("task cwe: its words of the word list run out at"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("supports lengths up to"), std::string::npos) << e.what();
  }
  try {
    gen("cwe", 300, 0);
    FAIL() << "cwe at 300 tokens must not fit";
  } catch (const topk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a length of at least"), std::string::npos) << e.what();
  }
  try {
    gen("niah", 1024, 0);
    FAIL();
  } catch (const topk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("niah_single_1"), std::string::npos) << "lists the tasks";
  }
}

// A finite pool never hangs a generator: with a tokenizer that counts one token per line, the
// adjective-noun keys of niah_multikey_2 run out below a million tokens, and the error says
// how far they reach.
TEST(Tasks, PoolsRunOutWithAnError) {
  Tokenizer lines;
  lines.name = "lines";
  lines.n_bos = 1;
  lines.encode = [](std::string_view s) {
    return std::vector<int32_t>(size_t(2 + std::count(s.begin(), s.end(), '\n')), 0);
  };
  Config c;
  c.length = 1 << 20;
  try {
    generate("niah_multikey_2", c, lines);
    FAIL() << "the keys cannot fill a million lines";
  } catch (const topk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("task niah_multikey_2: its adjective-noun keys run out at"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("with the lines tokenizer it supports lengths up to"),
              std::string::npos) << e.what();
  }
  c.length = 200000;
  EXPECT_GT(generate("niah_multikey_2", c, lines).units, 199000);
}

// Pools drawn through a permutation: distinct draws covering the pool, seeded.
TEST(Tasks, PermutationDrawsEveryValueOnce) {
  for (uint64_t n : {1ull, 2ull, 5ull, 1000ull, 26ull * 26 * 26}) {
    topk::tasks::Permutation p(n, 42);
    std::vector<bool> seen(n);
    for (uint64_t i = 0; i < n; i++) {
      uint64_t v = p.at(i);
      ASSERT_LT(v, n);
      EXPECT_FALSE(seen[v]);
      seen[v] = true;
    }
  }
  topk::tasks::Permutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; i++) same += a.at(i) == b.at(i);
  EXPECT_LT(same, 20);
}

TEST(Tasks, ThreadsGiveTheSameExamples) {
  std::vector<std::string> serial, parallel(task_list().size());
  for (const auto& t : task_list()) serial.push_back(gen(t.name, 3000, 17).prompt);
  std::vector<std::thread> th;
  for (size_t i = 0; i < task_list().size(); i++)
    th.emplace_back([&, i] { parallel[i] = gen(task_list()[i].name, 3000, 17).prompt; });
  for (auto& t : th) t.join();
  EXPECT_EQ(serial, parallel);
}

TEST(Tasks, JsonLinesRoundTripTheFields) {
  Example e = gen("niah_multivalue", 1024, 2);
  std::string j = to_json(e);
  EXPECT_EQ(j.find('\n'), std::string::npos) << "one line per example";
  EXPECT_NE(j.find("\"task\":\"niah_multivalue\""), std::string::npos);
  EXPECT_NE(j.find("\"mode\":\"ruler\""), std::string::npos);
  EXPECT_NE(j.find("\"version\":2"), std::string::npos);
  EXPECT_NE(j.find("\"gold\":[\"" + e.gold[0] + "\",\""), std::string::npos) << j;
  EXPECT_NE(j.find("{\"chars\":[" + std::to_string(e.needles[0].char_begin) + "," +
                   std::to_string(e.needles[0].char_end) + "],\"tokens\":[" +
                   std::to_string(e.needles[0].token_begin) + ","), std::string::npos) << j;
  EXPECT_NE(j.find("mentioned in the provided text?\""), std::string::npos);
  EXPECT_THROW(write_jsonl("/nonexistent-dir/x.jsonl", {e}), topk::Error);
}

TEST(Scorers, StringMatchAllAndPart) {
  std::vector<std::string> gold{"1234567", "Apple", "xyz"};
  EXPECT_DOUBLE_EQ(string_match_all("  1234567, apple and XYZ. ", gold), 100.0);
  EXPECT_NEAR(string_match_all("1234567 and pear", gold), 100.0 / 3, 1e-12);
  EXPECT_NEAR(string_match_all("APPLE 1234567", gold), 200.0 / 3, 1e-12);
  EXPECT_DOUBLE_EQ(string_match_all("nothing here", gold), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("123456", gold), 0.0) << "a prefix of the number is not a match";
  EXPECT_DOUBLE_EQ(string_match_part("the answer is xyz", gold), 100.0);
  EXPECT_DOUBLE_EQ(string_match_part("none", gold), 0.0);
  EXPECT_DOUBLE_EQ(score(Scorer::match_all, "apple", gold), 100.0 / 3);
  EXPECT_DOUBLE_EQ(score(Scorer::match_part, "apple", gold), 100.0);
  EXPECT_DOUBLE_EQ(string_match_all("ab", {" AB "}), 100.0) << "gold is stripped too";
  EXPECT_THROW(string_match_all("x", {}), topk::Error);
  // HELMET: SQuAD normalisation (case, punctuation, articles, spaces) of both sides.
  const std::string u = "7fde3192-0a9c-40b6-893c-971c95a1530f";
  EXPECT_DOUBLE_EQ(substring_exact_match(" " + u + "\n\nKey:", {u}), 100.0);
  EXPECT_DOUBLE_EQ(substring_exact_match("\"7FDE3192 0a9c40b6-893c-971c95a1530f.\"", {u}), 0.0)
      << "a space is not punctuation";
  EXPECT_DOUBLE_EQ(substring_exact_match("\"7FDE31920a9c40b6-893c-971c95a1530f.\"", {u}), 100.0)
      << "punctuation is dropped, case folded";
  EXPECT_DOUBLE_EQ(substring_exact_match("It is the  big   apple!", {"a Big Apple"}), 100.0);
  EXPECT_DOUBLE_EQ(substring_exact_match("the ater", {"theater"}), 0.0) << "articles are whole words";
  EXPECT_DOUBLE_EQ(substring_exact_match("7fde3192", {u}), 0.0);
  EXPECT_DOUBLE_EQ(score(Scorer::substring_exact_match, "x " + u, {"nope", u}), 100.0);
  EXPECT_EQ(std::string(scorer_name(Scorer::substring_exact_match)), "substring_exact_match");
  // The canonical target always scores 100.
  for (const auto& t : task_list()) {
    Example e = gen(t.name, 8192, 1);
    EXPECT_DOUBLE_EQ(score(e.scorer, e.target, e.gold), 100.0) << t.name;
    EXPECT_LT(score(e.scorer, e.answer_prefix, e.gold), 100.0) << t.name;
  }
}
