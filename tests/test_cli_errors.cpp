// Every way a careless user or a hostile file used to crash, hang or silently misbehave the
// `topk` tool (issue "nothing crashes, nothing hangs, nothing is silently wrong"), run against
// the built binary: each must now exit 1 (bad value) or 2 (bad usage) with a message naming the
// problem, or work. A run past the time limit (exit 124) is a hang.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli_util.h"

namespace fs = std::filesystem;
using topk::test::run_topk;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// A run file for a 1-layer model with 64 positions; `extra` adds or overrides keys.
std::string run_file(const fs::path& out, const std::string& extra = "",
                     const std::string& model_extra = "") {
  return R"({"out": ")" + out.string() + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
              "max_position_embeddings": 64)" + model_extra + R"(},
    "task": {"name": "copy", "min_len": 3, "max_len": 5, "alphabet": 6},
    "attention": "topk:k=4", "steps": 2, "batch_tokens": 32, "lr": 0.01, "warmup": 1,
    "seed": 3, "log_every": 0)" + extra + "}\n";
}

// One trained model (2 steps) for the whole suite, in a temporary folder.
class CliErrors : public testing::Test {
 protected:
  static inline fs::path dir, model;
  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("topk_cli_errors_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    write(dir / "run.json", run_file(dir / "run"));
    std::string out;
    ASSERT_EQ(run_topk("train --config " + (dir / "run.json").string(), out), 0) << out;
    model = dir / "run" / "checkpoint";
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  // `topk ARGS` must exit `rc` and say `says`.
  static void expect(const std::string& args, int rc, const std::string& says) {
    std::string out;
    int got = run_topk(args, out, 60);
    EXPECT_EQ(got, rc) << "topk " << args << "\n" << out;
    EXPECT_NE(out.find(says), std::string::npos) << "topk " << args << "\nsaid: " << out
                                                 << "\nexpected: " << says;
  }
  // A copy of the model whose config.json has each `from` replaced by its `to`.
  using Edits = std::vector<std::pair<std::string, std::string>>;
  static fs::path model_with_config(const std::string& name, const Edits& edits) {
    fs::path d = dir / name;
    fs::remove_all(d);
    fs::copy(model, d, fs::copy_options::recursive);
    std::string c = slurp(d / "config.json");
    for (const auto& [from, to] : edits) {
      size_t at = c.find(from);
      EXPECT_NE(at, std::string::npos) << from;
      if (at != std::string::npos) c.replace(at, from.size(), to);
    }
    write(d / "config.json", c);
    return d;
  }
  // A copy of the model whose float `index` of tensor data is replaced by `bits`.
  static fs::path model_with_weight(const std::string& name, uint32_t bits) {
    fs::path d = dir / name;
    fs::remove_all(d);
    fs::copy(model, d, fs::copy_options::recursive);
    std::string st = slurp(d / "model.safetensors");
    uint64_t n = 0;
    std::memcpy(&n, st.data(), 8);
    std::memcpy(&st[8 + n + 4 * 7], &bits, 4);  // the 8th float of the first tensor
    write(d / "model.safetensors", st);
    return d;
  }
};

TEST_F(CliErrors, GenerateNumbersAreStrict) {
  std::string g = "generate --model " + model.string();
  expect(g + " --ids abc", 1, "--ids item must be an integer in [0, 258], got 'abc'");
  expect(g + " --ids 1,,3", 1, "--ids: empty item at character 3 of '1,,3'");
  expect(g + " --ids 0x10", 1, "got '0x10'");
  expect(g + " --ids 1,2,", 1, "empty item");
  expect(g + " --ids 259", 1, "--ids item must be an integer in [0, 258], got '259'");
  expect(g + " --ids 1,2,3 --max-new 2", 0, "prefill 3 tokens");
  expect(g + " --prompt ab --max-new abc", 1, "--max-new must be an integer in [0, 1073741824], got 'abc'");
  expect(g + " --prompt ab --max-new 2.5", 1, "got '2.5'");
  expect(g + " --prompt ab --temperature nan", 1, "--temperature must be a number in [0, 1000], got 'nan'");
  expect(g + " --prompt ab --temperature -1", 1, "--temperature must be a number in [0, 1000]");
  expect(g + " --prompt ab --top-k -5", 1, "--top-k must be an integer in [0, 2147483647], got '-5'");
  expect(g + " --prompt ab --seed -1", 1, "--seed must be an integer in [0, 2^64 - 1], got '-1'");
  expect(g + " --prompt ab --max-new", 2, "--max-new: 1 required N missing");
  expect(g + " --prompt ab --bogus", 2, "unknown option '--bogus'");
  expect(g + " --prompt ab stray", 2, "unexpected argument 'stray'");
  expect("generate --prompt ab", 2, "give --model DIR");
}

TEST_F(CliErrors, GenerateStopsAtTheModelsPositions) {
  // --max-new 1000000000 used to allocate a KV cache for a billion tokens up front (bad_alloc).
  std::string g = "generate --model " + model.string();
  expect(g + " --prompt ab --max-new 1000000000", 0,
         "--max-new 1000000000 stops at the model's 64 positions (max_position_embeddings): at "
         "most 61 new tokens");
  expect(g + " --prompt " + std::string(70, 'a'), 1,
         "the prompt has 71 tokens, more than the model's 64 positions");
}

TEST_F(CliErrors, DecodeOnlyPoliciesAreRefusedForPrefillAndTraining) {
  std::string g = "generate --model " + model.string() + " --prompt ab";
  expect(g + " --prefill-attention window:w=4", 1,
         "--prefill-attention: 'window:w=4' is a decode-only policy");
  expect(g + " --prefill-attention oracle:k=2,precision=0.5", 1, "is a decode-only policy");
  expect(g + " --prefill-attention topk:ratio=0.5,adapt=entropy", 1, "is a decode-only policy");
  expect(g + " --prefill-attention quest:page=2,k=4", 1, "is a decode-only policy");
  expect(g + " --attention window:w=4,sink=1 --max-new 2", 0, "decoded");
  fs::path rf = dir / "window.json";
  write(rf, run_file(dir / "w", R"(, "attention": "window:w=4")"));
  expect("train --config " + rf.string(), 1, "'attention': 'window:w=4' is a decode-only policy");
  EXPECT_FALSE(fs::exists(dir / "w"));
}

TEST_F(CliErrors, OtherCommandsParseStrictly) {
  expect("demo --samples abc", 1, "--samples must be an integer in [1, 1000000], got 'abc'");
  expect("train --config x.json --stop-after abc", 1,
         "--stop-after must be an integer in [1, 2147483647], got 'abc'");
  expect("train --stop-after 3", 2, "--config RUN.json is required");
  expect("train --config x.json --stop-after-seconds -1", 1, "--stop-after-seconds");
  expect("train --config x.json --stop-after-seconds nan", 1, "--stop-after-seconds");
  expect("train --config", 2, "--config: 1 required");
  expect("eval --model " + model.string() + " --tasks ar --lengths 64 --policy full --threads 100000",
         1, "--threads must be an integer in [1, ");
  expect("eval --model " + model.string() + " --tasks ar --lengths 64,,80 --policy full", 1,
         "--lengths: empty item");
  expect("eval --model " + model.string() + " --tasks ar --lengths 64 --policy full --prefill x", 2,
         "--prefill: x not in {full,policy}");
  expect("bench attention --threads 100000", 1, "--threads must be an integer in [1, ");
  expect("bench attention --S 2147483647 --Hkv 1024 --Hq 1024 --D 2048", 1,
         "GB needed, more than the");
  expect("bench attention --dtype f64", 2, "--dtype: f64 not in {f32,bf16}");
  expect("bench train --threads 100000", 1, "--threads must be an integer in [1, ");
  expect("bench train --S 16,x", 1, "--S item must be an integer in [2, 16777216], got 'x'");
  expect("data --task vt --length 0x400", 1, "--length must be an integer in [1, 16777216], got '0x400'");
  expect("data --task vt --length 1024 --depth nan", 1, "--depth must be a number in [0, 1], got 'nan'");
  expect("version --verbose", 2, "unknown option '--verbose'");
}

// The device and batching options (--device everywhere a model runs, eval's --batch, bench
// generate's and bench train's options) parse as strictly as the rest.
TEST_F(CliErrors, DeviceAndBatchOptionsParseStrictly) {
  const std::string m = model.string();
  expect("generate --model " + m + " --prompt ab --device tpu", 2, "--device: tpu not in {cpu,cuda,auto}");
  expect("train --config x.json --device gpu", 2, "--device: gpu not in {cpu,cuda,auto}");
  expect("eval --model " + m + " --tasks ar --lengths 64 --policy full --device", 2,
         "--device: 1 required");
  expect("eval --model " + m + " --tasks ar --lengths 64 --policy full --batch abc", 1,
         "--batch must be an integer in [1, 65536], got 'abc'");
  expect("eval --model " + m + " --tasks ar --lengths 64 --policy full --batch 0", 1,
         "--batch must be an integer in [1, 65536], got '0'");
  expect("eval --model " + m + " --tasks ar --lengths 64 --policy full --mode fast", 1,
         "unknown task mode 'fast'");
  expect("bench generate --S 16,x", 1, "--S item must be an integer in [1, 16777216], got 'x'");
  expect("bench generate --batch 1,,2", 1, "--batch: empty item");
  expect("bench generate --steps 2.5", 1, "--steps must be an integer in [1, 16777216], got '2.5'");
  expect("bench generate --vocab 0x10", 1, "--vocab must be an integer in [2, 16777216], got '0x10'");
  expect("bench generate --seed -1", 1, "--seed must be an integer in [0, 2^64 - 1], got '-1'");
  expect("bench generate --device tpu", 2, "--device: tpu not in {cpu,cuda,auto}");
  expect("bench generate --frobnicate", 2, "unknown option '--frobnicate'");
  expect("bench generate --device cpu --S 1048576 --batch 65536 --layers 1", 1,
         "GB needed, more than the");
  expect("bench train --vocab 100", 1, "--vocab must be an integer in [259, 16777216], got '100'");
  expect("bench train --device cuda2", 2, "--device: cuda2 not in {cpu,cuda,auto}");
  expect("bench train --recompute 1", 2, "unexpected argument '1'");
  expect("bench train --breakdown --no-breakdown --S", 2, "--S: 1 required");
  fs::path rf = dir / "recompute.json";
  write(rf, run_file(dir / "rc", R"(, "recompute": 1)"));
  expect("train --config " + rf.string(), 1, "'recompute' must be true or false, got 1");
  write(rf, run_file(dir / "rc", R"(, "task": {"name": "passkey", "length": 256, "mode": 3})"));
  expect("train --config " + rf.string(), 1, "task: 'mode' must be a string, got 3");
  EXPECT_FALSE(fs::exists(dir / "rc"));
}

TEST_F(CliErrors, EvalWarnsPastTheModelsPositions) {
  std::string out;
  int rc = run_topk("eval --model " + model.string() + " --tasks ar --lengths 80 --samples 1 "
                    "--policy full --quiet", out, 120);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("warning: length 80 is past the model's 64 positions "
                     "(max_position_embeddings)"), std::string::npos) << out;
}

TEST_F(CliErrors, DataOutLeavesNoStrayFiles) {
  fs::path out = dir / "examples";
  fs::create_directories(out);
  expect("data --task vt --length 1024 --out " + out.string(), 1, "is a folder; give a file path");
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
  expect("data --task vt --length 1024 --out " + (dir / "nowhere" / "x.jsonl").string(), 1,
         "does not exist");
  EXPECT_FALSE(fs::exists(dir / "nowhere"));
}

// A FIFO in place of a file used to block the open forever.
TEST_F(CliErrors, FifosAreRefusedNotWaitedOn) {
  fs::path m = dir / "fifo_model";
  fs::remove_all(m);
  fs::copy(model, m, fs::copy_options::recursive);
  fs::remove(m / "model.safetensors");
  ASSERT_EQ(mkfifo((m / "model.safetensors").c_str(), 0600), 0);
  expect("generate --model " + m.string() + " --prompt ab", 1,
         "model.safetensors is a FIFO; expected a regular file");
  fs::remove(m / "config.json");
  ASSERT_EQ(mkfifo((m / "config.json").c_str(), 0600), 0);
  expect("generate --model " + m.string() + " --prompt ab", 1, "config.json is a FIFO");
  expect("train --config " + (m / "config.json").string(), 1, "config.json is a FIFO");
  expect("generate --model " + dir.string() + " --prompt ab", 1, "config.json");
}

TEST_F(CliErrors, ConfigSizesAreValidatedBeforeAllocating) {
  auto cfg = [&](const char* name, const Edits& edits, const std::string& says) {
    fs::path d = model_with_config(name, edits);
    expect("generate --model " + d.string() + " --prompt ab", 1, says);
  };
  cfg("hidden", {{"\"hidden_size\": 16", "\"hidden_size\": 2147483647"}},
      "hidden_size must be in [1, 131072], got 2147483647");
  cfg("vocab", {{"\"vocab_size\": 259", "\"vocab_size\": 2147483647"}},
      "vocab_size must be in [1, 16777216], got 2147483647");
  cfg("inter", {{"\"intermediate_size\": 32", "\"intermediate_size\": 2147483647"}},
      "intermediate_size must be in [1, 1048576], got 2147483647");
  cfg("head_dim", {{"\"head_dim\": 8", "\"head_dim\": 1073741824"}},
      "head_dim must be in [1, 2048], got 1073741824");
  cfg("layers", {{"\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2147483647"}},
      "num_hidden_layers must be in [1, 1024], got 2147483647");
  cfg("huge", {{"\"hidden_size\": 16", "\"hidden_size\": 131072"},
               {"\"intermediate_size\": 32", "\"intermediate_size\": 1048576"},
               {"\"num_hidden_layers\": 1", "\"num_hidden_layers\": 1024"},
               {"\"vocab_size\": 259", "\"vocab_size\": 16777216"}},
      "GB needed, more than the");
  cfg("eos", {{"\"eos_token_id\": 257", "\"eos_token_id\": [4294967553]"}},
      "'eos_token_id' must be an integer in [0, 2147483647], got 4294967553");
  cfg("yarn", {{"\"rope_type\": \"default\"", "\"rope_type\": \"yarn\", \"type\": \"default\""}},
      "rope_type 'yarn' and type 'default' disagree");
  cfg("rope5", {{"\"rope_type\": \"default\"", "\"rope_type\": 5"}},
      "'rope_type' must be a string, got 5");
}

TEST_F(CliErrors, NonFiniteWeightsAreAnErrorAtLoad) {
  // NaN and Inf weights used to decode token 0 and exit 0.
  fs::path nan = model_with_weight("nan_weights", 0x7fc00000u);
  expect("generate --model " + nan.string() + " --prompt ab", 1, "holds nan at element 7");
  fs::path inf = model_with_weight("inf_weights", 0xff800000u);
  expect("generate --model " + inf.string() + " --prompt ab", 1, "holds -inf at element 7");
  expect("eval --model " + inf.string() + " --tasks ar --lengths 64 --policy full", 1,
         "weights must be finite");
}

TEST_F(CliErrors, RunFileNumbersAreStrictAndSane) {
  struct Case { const char* extra; const char* says; };
  for (const Case& c : {
           Case{R"(, "lr": 1e39)", "'lr' must be a number in (0, 10], got 1e+39"},
           Case{R"(, "beta2": -0.5)", "'beta2' must be a number in [0, 1), got -0.5"},
           Case{R"(, "beta1": 1.5)", "'beta1' must be a number in [0, 1), got 1.5"},
           Case{R"(, "beta2": 1)", "'beta2' must be a number in [0, 1), got 1"},
           Case{R"(, "weight_decay": -1)", "'weight_decay' must be a number in [0, 100], got -1"},
           Case{R"(, "clip": 0)", "'clip' must be a number in (0, 1e+09], got 0"},
           Case{R"(, "clip": -1)", "'clip' must be a number in (0, 1e+09], got -1"},
           Case{R"(, "steps": 2.7)", "'steps' must be an integer in [1, 1000000000], got 2.7"},
           Case{R"(, "steps": 4294967298)", "'steps' must be an integer in [1, 1000000000], got 4294967298"},
           Case{R"(, "steps": "10")", "'steps' must be an integer in [1, 1000000000], got \"10\""},
           Case{R"(, "batch_tokens": 2147483647)", "'batch_tokens' must be an integer in [1, 1048576]"},
           Case{R"(, "task": {"name": "copy", "max_len": 1000000})", "task: 'max_len' must be an integer in [1, 4096], got 1000000"},
           Case{R"(, "task": {"name": "passkey", "length": 2147483647})", "task: 'length' must be an integer in [1, 1048576]"},
           Case{R"(, "seed": -3)", "'seed' must be an integer in [0, 2^64 - 1], got -3"},
           Case{R"(, "min_lr": 0.5)", "'min_lr' must be a number in [0, 0.01], got 0.5"},
           Case{R"(, "eval_examples": -1)", "'eval_examples' must be an integer in [0, 1000000]"},
           Case{R"(, "resume": 1)", "'resume' must be true or false, got 1"},
       }) {
    fs::path rf = dir / "bad_run.json";
    write(rf, run_file(dir / "bad_out", c.extra));
    expect("train --config " + rf.string(), 1, c.says);
    EXPECT_FALSE(fs::exists(dir / "bad_out")) << c.extra;
  }
}

// An exception from a library (here nlohmann's, reading a damaged trainer_state.json on resume)
// ends in a message and exit 1, never an abort.
TEST_F(CliErrors, LibraryExceptionsExitCleanly) {
  fs::path out = dir / "resume";
  fs::remove_all(out);
  fs::create_directories(out);
  fs::copy(model, out / "checkpoint", fs::copy_options::recursive);
  write(out / "checkpoint" / "trainer_state.json", R"({"step": "two", "seed": 3})");
  fs::path rf = dir / "resume.json";
  write(rf, run_file(out));
  std::string said;
  int rc = run_topk("train --config " + rf.string(), said, 60);
  EXPECT_EQ(rc, 1) << said;
  EXPECT_NE(said.find("topk train: error: "), std::string::npos) << said;
}

}  // namespace
