// Task generators: determinism, content semantics, depth control; scorers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tasks/tasks.h"
#include "topk/core.h"

using namespace topk::tasks;

static Example gen(const std::string& task, int64_t length, uint64_t seed, double depth = -1) {
  Config c;
  c.length = length;
  c.seed = seed;
  c.depth = depth;
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
    Example a = gen(t.name, 2048, 11), b = gen(t.name, 2048, 11), c = gen(t.name, 2048, 12);
    EXPECT_EQ(a.prompt, b.prompt) << t.name;
    EXPECT_EQ(a.answer_prefix, b.answer_prefix) << t.name;
    EXPECT_EQ(a.gold, b.gold) << t.name;
    ASSERT_EQ(a.needles.size(), b.needles.size()) << t.name;
    for (size_t i = 0; i < a.needles.size(); i++) {
      EXPECT_EQ(a.needles[i].char_begin, b.needles[i].char_begin) << t.name;
      EXPECT_EQ(a.needles[i].token_begin, b.needles[i].token_begin) << t.name;
    }
    EXPECT_NE(a.prompt, c.prompt) << t.name;
    EXPECT_NE(a.gold, c.gold) << t.name;
    EXPECT_EQ(a.version, kFormatVersion);
    EXPECT_EQ(a.task, t.name);
  }
}

// The stream must be the same on every machine and compiler: a change here is a format
// change and needs kFormatVersion bumped (and this digest updated).
TEST(Tasks, FormatIsStableAcrossBuilds) {
  uint64_t h = 1469598103934665603ull;
  for (const char* t : {"niah_single_1", "niah_multiquery", "vt", "fwe", "json_kv", "mqar"}) {
    Example e = gen(t, 1024, 5);
    for (unsigned char ch : e.prompt + e.answer_prefix + e.target) h = (h ^ ch) * 1099511628211ull;
  }
  EXPECT_EQ(kFormatVersion, 1);
  EXPECT_EQ(h, 6708651996954424273ull) << "digest of the version-1 examples changed";
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
    EXPECT_NE(e.prompt.find("they are: "), std::string::npos);  // the worked example at 8K
  }
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
  for (int64_t len : {2048, 8192}) {
    Example e = gen("cwe", len, 4);
    auto c = count_words(e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin)), true);
    int fc = len >= 4096 ? 30 : 6, fu = len >= 4096 ? 3 : 1;
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

TEST(Tasks, JsonKvIsOneValidObjectWithTheKey) {
  Example e = gen("json_kv", 4096, 8);
  std::string body = e.prompt.substr(size_t(e.context_begin), size_t(e.context_end - e.context_begin));
  std::regex line(" \"[0-9a-f-]{36}\": \"[0-9a-f-]{36}\",?");
  std::istringstream in(body);
  std::string l;
  int n = 0, commas = 0;
  while (std::getline(in, l)) {
    EXPECT_TRUE(std::regex_match(l, line)) << l;
    n++;
    commas += l.back() == ',';
  }
  EXPECT_EQ(commas, n - 1);
  EXPECT_EQ(e.units, n);
  std::string key = e.prompt.substr(e.prompt.rfind("Key: \"") + 6, 36);
  EXPECT_NE(body.find("\"" + key + "\": \"" + e.gold[0] + "\""), std::string::npos);
  EXPECT_EQ(e.answer_prefix, "Corresponding value:");
}

TEST(Tasks, MqarQueriesMatchPairs) {
  Example e = gen("mqar", 256, 2);
  std::map<std::string, std::string> kv;
  std::regex re("([a-z]{4})=([0-9]{4})");
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
    gen("cwe", 1 << 20, 0);
    FAIL() << "the word list cannot fill a million tokens";
  } catch (const topk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("content runs out"), std::string::npos) << e.what();
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
  // The canonical target always scores 100.
  for (const auto& t : task_list()) {
    Example e = gen(t.name, 4096, 1);
    EXPECT_DOUBLE_EQ(score(e.scorer, e.target, e.gold), 100.0) << t.name;
    EXPECT_LT(score(e.scorer, e.answer_prefix, e.gold), 100.0) << t.name;
  }
}
