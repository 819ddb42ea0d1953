// topk train / topk generate end to end: the built binary trains a tiny model from a run file
// into a temporary folder and generates from the checkpoint with top-k decoding; bad run files
// and missing files exit non-zero with a clear message and leave the checkpoint untouched.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Proc {
  int rc = -1;
  std::string out, err;
};

// Runs `topk ARGS` (the binary CMake built, TOPK_BIN), capturing stdout and stderr apart;
// `env` is put before the binary (an `env ...` command line).
Proc topk(const std::string& args, const fs::path& dir, const std::string& env = "") {
  fs::path err = dir / "stderr.txt";
  std::string cmd = env + " " + std::string(TOPK_BIN) + " " + args + " 2>" + err.string();
  Proc r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(err);
  std::stringstream ss;
  ss << f.rdbuf();
  r.err = ss.str();
  return r;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

// A tiny model (8 steps) for the error cases; `copy` = a 2-layer model that learns the copy
// task in ~2 s on 2 cores (160 steps), for generation.
std::string run_file(const fs::path& out, int hidden = 32, const std::string& extra = "") {
  return R"({"out": ")" + out.string() + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": )" + std::to_string(hidden) +
         R"(, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1},
    "task": {"name": "copy", "min_len": 3, "max_len": 5, "alphabet": 6},
    "attention": "topk:k=4", "steps": 8, "batch_tokens": 64, "lr": 0.01, "warmup": 2,
    "seed": 3, "checkpoint_every": 4, "log_every": 2)" + extra + "}\n";
}

std::string copy_run_file(const fs::path& out) {
  return R"({"out": ")" + out.string() + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
    "task": {"name": "copy", "min_len": 6, "max_len": 6, "alphabet": 10},
    "attention": "topk:k=4", "steps": 160, "batch_tokens": 256, "lr": 0.005, "min_lr": 0.0005,
    "warmup": 20, "seed": 1, "checkpoint_every": 80, "log_every": 40}
)";
}

class TrainCli : public testing::Test {
 protected:
  fs::path dir, out, ck;
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("topk_train_cli_" + std::to_string(getpid()) + "_" +
           testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    out = dir / "run";
    ck = out / "checkpoint";
  }
  void TearDown() override { fs::remove_all(dir); }
  // Runs `topk train --config RUN` with the given run file text; checks the run and its checkpoint.
  void train(const std::string& text, int steps) {
    write(dir / "run.json", text);
    Proc r = topk("train --config " + (dir / "run.json").string(), dir);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    std::string n = std::to_string(steps);
    EXPECT_NE(r.out.find("trained steps 0.." + n + "; checkpoint: " + ck.string()), std::string::npos)
        << r.out;
    EXPECT_NE(r.err.find("step " + n + "/" + n + "  loss "), std::string::npos) << r.err;
    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"})
      ASSERT_TRUE(fs::exists(ck / f)) << f;
    EXPECT_FALSE(fs::exists(out / "checkpoint.tmp"));
  }
  std::string snapshot() const {
    std::string s;
    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"})
      s += slurp(ck / f);
    return s;
  }
};

TEST_F(TrainCli, TrainThenGenerateWithTopkDecode) {
  ASSERT_NO_FATAL_FAILURE(train(copy_run_file(out), 160));
  Proc g = topk("generate --model " + ck.string() + " --prompt 'jacebd|' --attention topk:k=4 "
                "--max-new 10", dir);
  ASSERT_EQ(g.rc, 0) << g.out << g.err;
  std::printf("generate 'jacebd|' -> %s", g.out.c_str());
  // stderr: "prefill 8 tokens (full) ... ms; decoded N tokens (topk:k=4) at ... tok/s"
  EXPECT_NE(g.err.find("prefill 8 tokens (full)"), std::string::npos) << g.err;
  size_t at = g.err.find("decoded ");
  ASSERT_NE(at, std::string::npos) << g.err;
  int decoded = std::atoi(g.err.c_str() + at + 8);
  EXPECT_NE(g.err.find("tokens (topk:k=4)"), std::string::npos) << g.err;
  // Each decoded byte is one character on stdout, then a newline; the trained model copies
  // symbols of its alphabet and stops (EOS) before --max-new.
  ASSERT_FALSE(g.out.empty());
  EXPECT_EQ(g.out.back(), '\n');
  EXPECT_EQ(int(g.out.size()) - 1, decoded) << g.out;
  EXPECT_GE(decoded, 1) << g.err;
  EXPECT_LT(decoded, 10) << g.out;
  for (size_t i = 0; i + 1 < g.out.size(); i++) EXPECT_TRUE(g.out[i] >= 'a' && g.out[i] <= 'j') << g.out;
  // Running the finished run again resumes to no work and keeps the checkpoint as it is.
  std::string before = snapshot();
  Proc again = topk("train --config " + (dir / "run.json").string(), dir);
  EXPECT_EQ(again.rc, 0) << again.err;
  EXPECT_NE(again.out.find("trained steps 160..160"), std::string::npos) << again.out;
  EXPECT_EQ(snapshot(), before);
}

TEST_F(TrainCli, BadRunFilesFailClearlyAndKeepTheCheckpoint) {
  ASSERT_NO_FATAL_FAILURE(train(run_file(out), 8));
  std::string before = snapshot();
  auto expect_fail = [&](const std::string& args, const std::string& msg) {
    Proc r = topk(args, dir);
    EXPECT_EQ(r.rc, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(snapshot(), before) << args;
    EXPECT_FALSE(fs::exists(out / "checkpoint.tmp")) << args;
  };
  fs::path bad = dir / "bad.json";
  write(bad, run_file(out, 32, R"(, "stpes": 20)"));
  expect_fail("train --config " + bad.string(), bad.string() + ": unknown key 'stpes'");
  fs::path missing = dir / "no_such_run.json";
  expect_fail("train --config " + missing.string() + " --out " + out.string(),
              "cannot open " + missing.string());
  write(bad, "{\"out\": \"" + out.string() + "\", \"steps\": 3,");
  expect_fail("train --config " + bad.string(), "invalid JSON");
  write(bad, run_file(out, 48));  // another model into the same folder
  expect_fail("train --config " + bad.string(), "holds a different model than the run file's");
  write(bad, run_file(out, 32, R"(, "attention": "topk:kk=4")"));
  expect_fail("train --config " + bad.string(), "'topk:kk=4'");
  expect_fail("generate --model " + (dir / "nowhere").string() + " --prompt x",
              (dir / "nowhere").string());
  expect_fail("generate --model " + ck.string() + " --prompt x --attention topk:ratio=2",
              "'topk:ratio=2'");
  // The checkpoint still loads and generates.
  Proc g = topk("generate --model " + ck.string() + " --prompt 'ab|' --attention topk:k=4 --max-new 2",
               dir);
  EXPECT_EQ(g.rc, 0) << g.err;
}

// topk bench train on a very small model: one JSON row per (S, policy), the ratio's baseline is
// the full row, and a top-k budget that covers every key trains exactly as full attention does.
TEST(TrainBenchCli, JsonRowsAndErrors) {
  fs::path dir = fs::temp_directory_path() / ("topk_bench_train_" + std::to_string(getpid()));
  fs::create_directories(dir);
  Proc r = topk("bench train --S 16,32 --batch-tokens 64 --layers 1 --d-model 32 --heads 2 "
                "--kv-heads 1 --ffn 32 --steps 2 --warmup 1 --threads 1 --policy topk:k=32 "
                "--policy topk:k=4 --json", dir);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  std::vector<std::string> rows;
  std::stringstream ss(r.out);
  for (std::string l; std::getline(ss, l);) rows.push_back(l);
  ASSERT_EQ(rows.size(), 6u) << r.out;
  auto field = [](const std::string& row, const std::string& key) {
    size_t p = row.find("\"" + key + "\":");
    EXPECT_NE(p, std::string::npos) << key << " in " << row;
    return p == std::string::npos ? std::string() : row.substr(p + key.size() + 3, 24);
  };
  const char* pols[] = {"full", "topk:k=32", "topk:k=4"};
  for (int i = 0; i < 6; i++) {
    const std::string& row = rows[size_t(i)];
    EXPECT_EQ(field(row, "policy").rfind(std::string("\"") + pols[i % 3] + "\"", 0), 0u) << row;
    EXPECT_EQ(std::atoi(field(row, "S").c_str()), i < 3 ? 16 : 32) << row;
    EXPECT_EQ(std::atoi(field(row, "seqs").c_str()), i < 3 ? 4 : 2) << row;
    EXPECT_EQ(std::atoi(field(row, "threads").c_str()), 1) << row;
    EXPECT_GT(std::atof(field(row, "median_step_ms").c_str()), 0.0) << row;
    EXPECT_GT(std::atof(field(row, "tokens_per_s").c_str()), 0.0) << row;
    for (const char* k : {"attn_fwd", "attn_bwd", "other_fwd", "other_bwd", "loss", "optim"})
      EXPECT_GE(std::atof(field(row, k).c_str()), 0.0) << k << " " << row;
    if (i % 3 == 0) {
      EXPECT_EQ(std::atof(field(row, "ratio_vs_full").c_str()), 1.0) << row;
    }
  }
  // k = 32 keeps every key of sequences of 16 and 32 tokens: the same losses as full.
  for (int i : {0, 3}) {
    for (const char* k : {"loss_first", "loss_last"}) {
      double full = std::atof(field(rows[size_t(i)], k).c_str());
      double all = std::atof(field(rows[size_t(i + 1)], k).c_str());
      EXPECT_NEAR(all, full, 1e-4) << k << " row " << i;
    }
  }
  r = topk("bench train --policy full", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--policy 'full'"), std::string::npos) << r.err;
  r = topk("bench train --S 1", dir);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--S item must be an integer in [2, 16777216], got '1'"), std::string::npos) << r.err;
  r = topk("bench train --frobnicate", dir);
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("unknown option '--frobnicate'"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

// Idle threads of both pools sleep by default (cli/main.cpp restarts the tool with
// OMP_WAIT_POLICY=passive and OPENBLAS_THREAD_TIMEOUT=4), and a value the user set is kept.
TEST(TrainBenchCli, IdleThreadsSleepUnlessTheUserChose) {
  fs::path dir = fs::path(testing::TempDir()) / ("topk_threads_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string clear = "env -u OMP_WAIT_POLICY -u OPENBLAS_THREAD_TIMEOUT";
  std::string d = topk("version", dir, clear).out;
  EXPECT_NE(d.find("OMP_WAIT_POLICY=passive"), std::string::npos) << d;
  EXPECT_NE(d.find("OPENBLAS_THREAD_TIMEOUT=4)"), std::string::npos) << d;
  std::string u = topk("version", dir, clear + " OMP_WAIT_POLICY=active OPENBLAS_THREAD_TIMEOUT=10").out;
  EXPECT_NE(u.find("OMP_WAIT_POLICY=active"), std::string::npos) << u;
  EXPECT_NE(u.find("OPENBLAS_THREAD_TIMEOUT=10)"), std::string::npos) << u;
  fs::remove_all(dir);
}

}  // namespace
