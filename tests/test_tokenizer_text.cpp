// The text machinery under the tokenizer: the regex engine against Oniguruma's own answers
// (tests/data/regex_onig_cases.jsonl, from tools/make_regex_cases.py), Unicode categories,
// NFC, and Rust's lossy UTF-8 decoding.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/json.h"
#include "core/regex.h"
#include "core/unicode.h"
#include "model/bpe.h"
#include "topk/core.h"

using namespace topk;

TEST(TokenizerText, RegexMatchesOniguruma) {
  std::ifstream in(std::string(TOPK_SOURCE_DIR) + "/tests/data/regex_onig_cases.jsonl");
  ASSERT_TRUE(in) << "missing tests/data/regex_onig_cases.jsonl";
  std::string line, last_pattern;
  Regex re;
  int n = 0;
  while (std::getline(in, line)) {
    json j = json::parse(line);
    std::string p = j["p"], t = j["t"];
    if (p != last_pattern) re = Regex(p), last_pattern = p;
    std::vector<std::pair<size_t, size_t>> got;
    re.find_all(t, got);
    std::vector<std::pair<size_t, size_t>> want;
    for (const json& m : j["m"]) want.push_back({m[0].get<size_t>(), m[1].get<size_t>()});
    EXPECT_EQ(got, want) << "pattern " << p << "\ntext " << json(t).dump();
    ++n;
  }
  EXPECT_GT(n, 500);
}

TEST(TokenizerText, RegexRefusesWhatItDoesNotImplement) {
  for (const char* p : {"(?<=a)b", "\\w+", "(a)\\1", "\\bx", "[[:alpha:]]", "[a&&b]", "(?i:é)",
                        "(?i:[à-ÿ])", "(a*)*", "a{2000}", "(?x)a", "[a-", "(a", "a)", "*a",
                        "\\p{Greek}"}) {
    try {
      Regex r(p);
      ADD_FAILURE() << "accepted " << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("pre-tokenizer regex"), std::string::npos) << e.what();
    }
  }
}

TEST(TokenizerText, UnicodeCategories) {
  using namespace unicode;
  EXPECT_EQ(category(U'a'), Ll);
  EXPECT_EQ(category(U'Z'), Lu);
  EXPECT_EQ(category(U'中'), Lo);
  EXPECT_EQ(category(U'٣'), Nd);
  EXPECT_EQ(category(U'²'), No);
  EXPECT_EQ(category(U'Ⅻ'), Nl);
  EXPECT_EQ(category(0x1F600), So);
  EXPECT_EQ(category(0x0301), Mn);
  EXPECT_EQ(category(0x0378), Cn);      // unassigned
  EXPECT_EQ(category(0x20000), Lo);     // CJK extension B, past the BMP table
  EXPECT_EQ(category(kInvalid + 0xFF), Cn);
  for (char32_t c : {0x09, 0x0A, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x202F, 0x3000})
    EXPECT_TRUE(is_space(c)) << std::hex << unsigned(c);
  for (char32_t c : {0x1C, 0x200B, 0x200D, 0xFEFF, 0x61}) EXPECT_FALSE(is_space(c)) << std::hex << unsigned(c);
  int len;
  EXPECT_EQ(decode("\xC3\xA9", 0, &len), U'é');
  EXPECT_EQ(len, 2);
  EXPECT_EQ(decode("\xC0\xAF", 0, &len), kInvalid + 0xC0);  // overlong
  EXPECT_EQ(decode("\xED\xA0\x80", 0, &len), kInvalid + 0xED);  // surrogate
  EXPECT_EQ(len, 1);
}

TEST(TokenizerText, Nfc) {
  using unicode::nfc;
  EXPECT_EQ(nfc("plain ASCII"), "plain ASCII");
  EXPECT_EQ(nfc("e\u0301"), "\u00e9");                    // compose
  EXPECT_EQ(nfc("\u212b"), "\u00c5");                     // singleton (Angstrom sign)
  EXPECT_EQ(nfc("a\u0323\u0302"), "\u1ead");              // ạ + ̂ = ậ
  EXPECT_EQ(nfc("a\u0302\u0323"), "\u1ead");              // reordered first
  EXPECT_EQ(nfc("\u1100\u1161\u11a8"), "\uac01");         // Hangul L V T
  EXPECT_EQ(nfc("\uac00\u11a8"), "\uac01");               // LV + T
  EXPECT_EQ(nfc("\u0958"), "\u0915\u093c");               // composition exclusion stays apart
  EXPECT_EQ(nfc("\u0344"), "\u0308\u0301");               // non-starter decomposition
  EXPECT_EQ(nfc("\U0001D15E"), "\U0001D157\U0001D165");   // excluded, outside the BMP
  std::vector<int64_t> map;
  EXPECT_EQ(nfc("ab\u00e9e\u0301c", &map), "ab\u00e9\u00e9c");
  EXPECT_EQ(map, (std::vector<int64_t>{0, 1, 2, 3, 4, 4, 7, 8}));
}

TEST(TokenizerText, LossyUtf8LikeRust) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(utf8_lossy("\xC3"), r);
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), r);            // one maximal subpart, one U+FFFD
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98x"), r + "x");
  EXPECT_EQ(utf8_lossy("\x80\x80"), r + r);
  EXPECT_EQ(utf8_lossy("\xE0\x80\x80"), r + r + r);    // overlong: the lead alone is the subpart
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);    // surrogate
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), r + r + r + r);
  EXPECT_EQ(utf8_lossy("\xFF"), r);
}
