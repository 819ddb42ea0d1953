// topk's tokenizer against the Hugging Face tokenizers library itself: the ids and text that
// library gave for ~300 strings and 40 random id sequences, with tokenizers it trained
// (tests/data/bpe_*, made by tools/make_bpe_fixture.py where tokenizers is installed).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/json.h"
#include "model/tokenizer.h"
#include "topk/core.h"

using namespace topk;

namespace {

void check_fixture(const std::string& name) {
  std::string dir = std::string(TOPK_SOURCE_DIR) + "/tests/data/" + name;
  if (!std::filesystem::exists(dir + "/tokenizer.json") || !std::filesystem::exists(dir + "/cases.jsonl"))
    GTEST_SKIP() << "tests/data/" << name << " is absent: make it with `python3 tools/make_bpe_fixture.py "
                 << "tests/data` where the tokenizers and transformers packages are installed";
  Tokenizer t = tokenizer_load(dir);
  ASSERT_EQ(t.kind, Tokenizer::Kind::bpe);
  std::ifstream in(dir + "/cases.jsonl");
  std::string line;
  int texts = 0, decodes = 0;
  while (std::getline(in, line)) {
    json c = json::parse(line);
    if (c.contains("meta")) {
      std::printf("%s: made with %s\n", name.c_str(), c["meta"].dump().c_str());
      continue;
    }
    if (c.contains("decode_ids")) {
      std::vector<int> ids = c["decode_ids"].get<std::vector<int>>();
      EXPECT_EQ(decode(t, ids), c["decoded"].get<std::string>()) << json(ids).dump();
      EXPECT_EQ(decode(t, ids, true), c["decoded_skip"].get<std::string>()) << json(ids).dump();
      ++decodes;
      continue;
    }
    std::string text = c["text"];
    std::vector<int> ids = c["ids"].get<std::vector<int>>();
    auto field = [&](const char* k, const std::vector<int>& dflt) {
      return c.contains(k) ? c[k].get<std::vector<int>>() : dflt;
    };
    std::string what = json(text).dump();
    EXPECT_EQ(encode(t, text, false, true), ids) << what;
    EXPECT_EQ(encode(t, text, false, false), field("ids_plain", ids)) << what << " (specials as text)";
    // add_bos follows what transformers gives, where it differs from the bare template
    std::vector<int> templ = field("ids_template", ids);
    EXPECT_EQ(encode(t, text, true, true), field("ids_transformers", templ)) << what << " (with BOS)";
    std::string decoded = c.value("decoded", text);
    EXPECT_EQ(decode(t, ids), decoded) << what;
    EXPECT_EQ(decode(t, ids, true), c.value("decoded_skip", decoded)) << what;
    std::vector<int64_t> starts;  // and starts stay consistent with the tokens
    std::vector<int> again = encode(t, text, false, true, &starts);
    ASSERT_EQ(starts.size(), again.size());
    for (size_t i = 1; i < starts.size(); ++i) EXPECT_LE(starts[i - 1], starts[i]) << what;
    ++texts;
  }
  EXPECT_GE(texts, 100);
  EXPECT_GE(decodes, 10);
}

}  // namespace

TEST(TokenizerHf, Gpt2Fixture) { check_fixture("bpe_gpt2"); }
TEST(TokenizerHf, Llama3Fixture) { check_fixture("bpe_llama3"); }
TEST(TokenizerHf, Qwen2Fixture) { check_fixture("bpe_qwen2"); }
