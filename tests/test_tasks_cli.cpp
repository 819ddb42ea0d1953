// topk data: output and errors of the command-line tool (run as a subprocess).
#include <gtest/gtest.h>

#include "cli_util.h"
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

// The topk binary sits next to the tests folder of the build tree.
using topk::test::topk_bin;
static int run(const std::string& args, std::string& out) { return topk::test::run_topk(args, out); }

TEST(TasksCli, BinaryExists) { ASSERT_TRUE(fs::exists(topk_bin())) << topk_bin(); }

TEST(TasksCli, ListsTasks) {
  std::string out;
  ASSERT_EQ(run("data --list", out), 0) << out;
  for (const char* t : {"niah_single_1", "niah_multiquery", "vt", "cwe", "fwe", "json_kv", "passkey", "mqar"})
    EXPECT_NE(out.find(t), std::string::npos) << t;
  EXPECT_NE(out.find("format v2"), std::string::npos);
}

// --model DIR: lengths count that model's tokens (here a small GPT-2-style BPE, about 2.4 bytes
// a token on this text), so a prompt of 1024 tokens holds far more text than with the byte
// tokenizer.
TEST(TasksCli, LengthsInAModelsTokenizer) {
  std::string out;
  const std::string dir = std::string(TOPK_SOURCE_DIR) + "/tests/data/bpe_gpt2";
  ASSERT_EQ(run("data --model " + dir + " --list", out), 0) << out;
  EXPECT_EQ(out.find("tokenizer 'bytes'"), std::string::npos) << out;
  auto prompt_bytes = [&](const std::string& extra) -> size_t {
    EXPECT_EQ(run("data --task passkey --length 1024 --n 1 --json" + extra, out), 0) << out;
    size_t a = out.find("\"prompt\":\""), b = out.find("\",\"", a + 10);
    return a == std::string::npos || b == std::string::npos ? 0 : b - a;
  };
  const size_t bytes = prompt_bytes(""), bpe = prompt_bytes(" --model " + dir);
  EXPECT_LT(bytes, 1100u);
  EXPECT_GT(2 * bpe, 3 * bytes);
  EXPECT_EQ(run("data --task passkey --length 1024 --model /nonexistent/model", out), 1);
  EXPECT_NE(out.find("--model /nonexistent/model is not a folder"), std::string::npos) << out;
  EXPECT_EQ(run("data --task passkey --length 1024 --model " + std::string(TOPK_SOURCE_DIR) +
                "/tests/data/hf_tiny_llama", out), 1);
  EXPECT_NE(out.find("has no tokenizer"), std::string::npos) << out;
}

TEST(TasksCli, PrintsExamples) {
  std::string out;
  ASSERT_EQ(run("data --task passkey --length 256 --n 2 --seed 4", out), 0) << out;
  EXPECT_NE(out.find("=== passkey #0  seed 4"), std::string::npos) << out;
  EXPECT_NE(out.find("=== passkey #1  seed 5"), std::string::npos) << out;
  EXPECT_NE(out.find("What is the pass key?"), std::string::npos);
  ASSERT_EQ(run("data --task mqar --length 512 --n 3 --json --depth 0.5", out), 0) << out;
  int lines = 0;
  for (char c : out) lines += c == '\n';
  EXPECT_EQ(lines, 3);
  EXPECT_NE(out.find("\"scorer\":\"string_match_all\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"needles\":[{\"chars\":["), std::string::npos) << out;
  EXPECT_NE(out.find("\"version\":2"), std::string::npos);
  EXPECT_NE(out.find("\"mode\":\"compact\""), std::string::npos);
  ASSERT_EQ(run("data --task niah_single_1 --length 640 --n 1 --json --mode compact", out), 0) << out;
  EXPECT_NE(out.find("\"mode\":\"compact\""), std::string::npos) << out;
  ASSERT_EQ(run("data --task niah_single_1 --length 640 --n 1 --json", out), 0) << out;
  EXPECT_NE(out.find("\"mode\":\"ruler\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"answer_tokens\":128"), std::string::npos) << out;
}

TEST(TasksCli, EvenDepthsAndOutFile) {
  fs::path dir = fs::temp_directory_path() / ("topk_tasks_cli_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "ex.jsonl").string(), out;
  ASSERT_EQ(run("data --task niah_single_1 --length 2048 --n 5 --depth even --out " + path, out), 0) << out;
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  std::FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_TRUE(f);
  char line[1 << 14];
  std::vector<std::string> depths;
  while (std::fgets(line, sizeof line, f)) {
    std::string l(line);
    size_t p = l.find("\"depth\":");
    ASSERT_NE(p, std::string::npos);
    depths.push_back(l.substr(p + 8, l.find(',', p) - p - 8));
  }
  std::fclose(f);
  EXPECT_EQ(depths, (std::vector<std::string>{"0.0", "0.25", "0.5", "0.75", "1.0"}));
  fs::remove_all(dir);
}

TEST(TasksCli, Errors) {
  std::string out;
  EXPECT_EQ(run("data --task nope --length 1024", out), 1);
  EXPECT_NE(out.find("unknown task 'nope'"), std::string::npos) << out;
  EXPECT_EQ(run("data --task vt --length 4k", out), 1);
  EXPECT_NE(out.find("--length must be an integer in [1, 16777216], got '4k'"), std::string::npos) << out;
  EXPECT_EQ(run("data --task vt --length -5", out), 1);
  EXPECT_NE(out.find("--length must be an integer in [1, 16777216], got '-5'"), std::string::npos) << out;
  EXPECT_EQ(run("data --task cwe --length 256", out), 1);
  EXPECT_NE(out.find("needs a length of at least"), std::string::npos) << out;
  EXPECT_EQ(run("data --task vt --length 1024 --depth 1.5", out), 1);
  EXPECT_NE(out.find("--depth must be a number in [0, 1], got '1.5'"), std::string::npos) << out;
  EXPECT_EQ(run("data --task vt", out), 1);
  EXPECT_NE(out.find("--length"), std::string::npos) << out;
  EXPECT_EQ(run("data --length 1024", out), 1);
  EXPECT_NE(out.find("--task is required"), std::string::npos) << out;
  EXPECT_EQ(run("data --frobnicate", out), 2);
  EXPECT_NE(out.find("unknown option"), std::string::npos) << out;
  EXPECT_EQ(run("data --task cwe --length 2048 >/dev/null; TOPK_WORDLIST=/nonexistent/words " +
                    topk_bin() + " data --task cwe --length 2048", out), 1);
  EXPECT_NE(out.find("install the Debian package 'wamerican-small'"), std::string::npos) << out;
  EXPECT_EQ(run("data --task json_kv --length 4096 --mode ruler", out), 1);
  EXPECT_NE(out.find("task json_kv has no ruler mode"), std::string::npos) << out;
  EXPECT_EQ(run("data --task vt --length 4096 --mode fast", out), 1);
  EXPECT_NE(out.find("unknown task mode 'fast'"), std::string::npos) << out;
  EXPECT_EQ(run("data --task vt --length", out), 2);
  EXPECT_NE(out.find("--length: 1 required N missing"), std::string::npos) << out;
}
