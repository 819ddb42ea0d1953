// Training: schedule, AdamW, clipping, gradient accumulation, checkpoints with exact resume,
// and a tiny model that learns the copy task on the CPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>

#include "model/forward.h"
#include "model/infer.h"
#include <filesystem>

#include "core/json.h"
#include "model/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/evaluate.h"
#include "train/trainer.h"

using namespace topk;

static std::string tmp(const char* name) {
  return testing::TempDir() + "topk_train_" + std::to_string(getpid()) + "_" + name;
}

TEST(Train, ScheduleWarmupAndCosine) {
  Schedule s{1.0f, 0.1f, 4, 14};
  EXPECT_FLOAT_EQ(lr_at(s, 0), 0.25f);
  EXPECT_FLOAT_EQ(lr_at(s, 3), 1.0f);
  EXPECT_FLOAT_EQ(lr_at(s, 4), 1.0f);
  EXPECT_NEAR(lr_at(s, 8), 0.1 + 0.45 * (1 + std::cos(3.14159265 * 4 / 9)), 1e-6);  // cosine 4..13
  EXPECT_FLOAT_EQ(lr_at(s, 13), 0.1f);
  EXPECT_FLOAT_EQ(lr_at(s, 100), 0.1f);
  for (int i = 5; i < 14; i++) EXPECT_LE(lr_at(s, i), lr_at(s, i - 1));
}

TEST(Train, AdamWStepAndClipping) {
  ModelConfig c;
  c.hidden = 4, c.inter = 4, c.layers = 1, c.heads = 1, c.kv_heads = 1, c.head_dim = 4, c.vocab = 3;
  Model m = model_create(c);
  for (int64_t i = 0; i < m.numel; i++) m.host()[i] = 1.0f;
  AdamW opt = adamw_create(m);
  Buffer g(DType::f32, {m.numel});
  for (int64_t i = 0; i < m.numel; i++) g.ptr<float>()[i] = 0.5f;
  AdamWOpts o;
  o.weight_decay = 0.1f;
  adamw_step(opt, m, g, 0.01f, o);
  // First step: m̂ = g, v̂ = g², update = lr * (sign(g) + decay * w) on decayed weights.
  size_t wq = 0, norm = 0;
  for (const auto& p : m.params) {
    if (p.name == "model.layers.0.self_attn.q_proj.weight") wq = p.offset;
    if (p.name == "model.norm.weight") norm = p.offset;
  }
  ASSERT_TRUE(wq && norm);
  EXPECT_NEAR(m.host()[wq], 1.0f - 0.01f * (1.0f + 0.1f), 1e-6f);  // decayed
  EXPECT_NEAR(m.host()[norm], 1.0f - 0.01f, 1e-6f);  // no decay on norms
  std::vector<float> v = {3, 4};
  EXPECT_NEAR(clip_grad_norm(make_view(v.data(), DType::f32, {2}), 1.0f), 5.0, 1e-9);
  EXPECT_NEAR(v[0], 0.6f, 1e-6f);
  EXPECT_NEAR(v[1], 0.8f, 1e-6f);
}

TEST(Train, AccumulatedGradientEqualsOneBatch) {
  ModelConfig c;
  c.hidden = 16, c.inter = 16, c.layers = 1, c.heads = 2, c.kv_heads = 1, c.head_dim = 8, c.vocab = 11;
  Model m = model_create(c);
  model_init(m, 3, 0.3f);
  std::vector<std::vector<int>> a = {{1, 2, 3, 4}, {5, 6, 7}}, b = {{8, 9, 10, 1, 2}};
  auto grad_of = [&](const std::vector<std::vector<std::vector<int>>>& parts) {
    double count = 0;
    std::vector<Batch> bs;
    for (auto& p : parts) {
      bs.push_back(make_batch(p));
      count += loss_count(bs.back());
    }
    Buffer g(DType::f32, {m.numel});
    for (auto& bt : bs) {
      Acts acts;
      model_forward(m, bt, AttnPolicy{}, acts);
      model_loss(m, bt, acts, float(1.0 / count));
      model_backward(m, bt, AttnPolicy{}, acts, g);
    }
    return std::vector<float>(g.ptr<float>(), g.ptr<float>() + m.numel);
  };
  std::vector<std::vector<int>> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  std::vector<float> g1 = grad_of({ab}), g2 = grad_of({a, b});
  for (size_t i = 0; i < g1.size(); i++) ASSERT_NEAR(g1[i], g2[i], 1e-6f + 1e-4f * std::abs(g1[i])) << i;
}

static TrainConfig small_run(const std::string& out, int steps) {
  return train_config_from_json_text(R"({
    "out": ")" + out + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
              "torch_dtype": "bfloat16"},
    "task": {"name": "copy", "min_len": 3, "max_len": 6, "alphabet": 6},
    "attention": "topk:k=4", "steps": )" + std::to_string(steps) + R"(, "batch_tokens": 96,
    "grad_accum": 2, "lr": 0.003, "warmup": 2, "weight_decay": 0.01, "clip": 0.5, "seed": 5,
    "log_every": 0})", "run");
}

TEST(Train, ResumeReproducesUninterruptedRun) {
  std::string d1 = tmp("full"), d2 = tmp("resumed");
  Model full, resumed;
  TrainResult r1 = train_run(small_run(d1, 6), -1, &full);
  EXPECT_EQ(r1.end_step, 6);
  TrainResult part = train_run(small_run(d2, 6), 3, nullptr);  // "interrupted" after 3 steps
  EXPECT_EQ(part.end_step, 3);
  TrainResult rest = train_run(small_run(d2, 6), -1, &resumed);
  EXPECT_EQ(rest.start_step, 3);
  EXPECT_EQ(rest.end_step, 6);
  EXPECT_EQ(model_host_weights(full), model_host_weights(resumed));
  for (int i = 0; i < 3; i++) EXPECT_EQ(r1.losses[size_t(3 + i)], rest.losses[size_t(i)]);
  // The checkpoint folder is a model folder: bf16 weights, loadable on its own.
  Model back = model_load(d2 + "/checkpoint");
  EXPECT_EQ(back.cfg.dtype, "bfloat16");
  EXPECT_TRUE(back.cfg.tokenizer.present);
  EXPECT_NE(access((d2 + "/checkpoint.tmp").c_str(), F_OK), 0);
  // A finished run resumes to no work.
  TrainResult again = train_run(small_run(d2, 6), -1, nullptr);
  EXPECT_EQ(again.start_step, 6);
  EXPECT_TRUE(again.losses.empty());
  remove_tree(d1);
  remove_tree(d2);
}

// A mix whose lengths a task cannot fill fails before the first step, naming the task, and not
// at the first batch that draws such a length.
TEST(Train, MixTaskThatCannotFillItsLengthsFailsFirst) {
  const std::string d = tmp("unfit");
  TrainConfig cfg = train_config_from_json_text(R"({
    "out": ")" + d + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1},
    "task": {"name": "mix", "length": 1024, "min_length": 200, "loss": "question",
             "mix": [{"name": "passkey", "weight": 1}, {"name": "niah_single_1", "weight": 0.01}]},
    "steps": 3, "batch_tokens": 2048, "lr": 0.001, "seed": 1, "log_every": 0})", "run");
  try {
    train_run(cfg);
    FAIL() << "niah_single_1 cannot fill 200 tokens";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("task niah_single_1 (ruler mode) needs a length of at least"),
              std::string::npos) << e.what();
  }
  EXPECT_NE(access((d + "/checkpoint").c_str(), F_OK), 0);
  remove_tree(d);
}

// Every run file under examples/ asks its tasks only for lengths they can fill (byte tokens,
// the tokenizer of all of them): a GPU run must not stop at the first batch that draws one.
TEST(Train, ShippedRunFilesTasksFillTheirLengths) {
  TokenizerConfig tc;
  tc.present = true;
  const Tokenizer bytes = tokenizer_bytes(tc);
  int n = 0;
  for (const auto& f : std::filesystem::directory_iterator(std::string(TOPK_SOURCE_DIR) + "/examples")) {
    if (f.path().extension() != ".json") continue;
    SCOPED_TRACE(f.path().string());
    const TrainConfig cfg = train_config_from_json_text(read_file(f.path().string()), f.path().string());
    EXPECT_NO_THROW(check_task_lengths(cfg.task, bytes));
    n++;
  }
  EXPECT_GE(n, 10);
}

// A time limit ends the run at a step boundary with a checkpoint, and the run resumes from it to
// the same weights as without one: with no time left, one step is taken, then the next call
// takes the rest.
TEST(Train, TimeLimitStopsAtAStepAndResumes) {
  std::string d1 = tmp("untimed"), d2 = tmp("timed");
  Model full, resumed;
  train_run(small_run(d1, 5), -1, &full);
  TrainConfig timed = small_run(d2, 5);
  timed.stop_seconds = 0;
  TrainResult part = train_run(timed, -1, nullptr);
  EXPECT_EQ(part.end_step, 1);
  EXPECT_EQ(part.checkpoint, d2 + "/checkpoint");
  timed.stop_seconds = 3600;
  TrainResult rest = train_run(timed, -1, &resumed);
  EXPECT_EQ(rest.start_step, 1);
  EXPECT_EQ(rest.end_step, 5);
  EXPECT_EQ(model_host_weights(full), model_host_weights(resumed));
  remove_tree(d1);
  remove_tree(d2);
}

// A run that diverges stops with an error at the first non-finite loss and keeps the last
// checkpoint it wrote, whole and finite (it used to train on to NaN, exit 0 and write an
// all-NaN checkpoint). The run file refuses such an lr; the library takes any.
TEST(Train, DivergenceStopsWithoutANonFiniteCheckpoint) {
  std::string d = tmp("diverge");
  TrainConfig cfg = small_run(d, 20);
  cfg.sched.lr = 1e30f, cfg.sched.min_lr = 1e29f, cfg.clip = 1e30f, cfg.checkpoint_every = 1;
  try {
    train_run(cfg, -1, nullptr);
    ADD_FAILURE() << "a diverging run finished";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training stops here"), std::string::npos) << e.what();
  }
  Model back = model_load(d + "/checkpoint");  // model_load refuses NaN or Inf weights
  for (float w : model_host_weights(back)) ASSERT_TRUE(std::isfinite(w));
  EXPECT_NE(access((d + "/checkpoint.tmp").c_str(), F_OK), 0);
  remove_tree(d);
}

TEST(Train, RejectsBadRunFiles) {
  EXPECT_THROW(train_config_from_json_text(R"({"out": "x", "stpes": 3, "init": "m"})", "r"), Error);
  EXPECT_THROW(train_config_from_json_text(R"({"out": "x"})", "r"), Error);
  EXPECT_THROW(train_config_from_json_text(R"({"out": "x", "init": "m", "attention": "topk"})", "r"),
               Error);
  EXPECT_THROW(train_config_from_json_text(R"({"out": "x", "init": "m", "task": {"name": "sort"}})", "r"),
               Error);
}

// A 2-layer model learns to copy fixed-length strings within a CI budget, with full or with
// native top-k attention in training. Chance is ln 10 = 2.3 per copied symbol; the bound asks
// for near-perfect copying, and greedy decoding (top-k decode) must reproduce unseen strings.
class TrainCopy : public testing::TestWithParam<const char*> {};

TEST_P(TrainCopy, TinyModelLearnsCopy) {
  std::string out = tmp("copy");
  TrainConfig cfg = train_config_from_json_text(R"({
    "out": ")" + out + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2},
    "task": {"name": "copy", "min_len": 6, "max_len": 6, "alphabet": 10},
    "attention": ")" + std::string(GetParam()) + R"(",
    "steps": 160, "batch_tokens": 256, "lr": 0.005, "min_lr": 0.0005, "warmup": 20,
    "clip": 1.0, "seed": 1, "log_every": 0})", "run");
  Model m;
  TrainResult r = train_run(cfg, -1, &m);
  double last = 0;
  for (size_t i = r.losses.size() - 20; i < r.losses.size(); i++) last += r.losses[i] / 20;
  std::printf("copy (%s): first loss %.3f, mean of the last 20 steps %.4f\n", GetParam(),
              r.losses[0], last);
  EXPECT_GT(r.losses[0], 2.0);
  EXPECT_LT(last, 0.05);
  int exact = 0;
  for (const char* w : {"jacebd", "hhgiab", "bdfhjc"}) {
    KVCache kc = kv_cache_create(m, 1, 64);
    std::vector<int> p = {256};
    for (const char* c = w; *c; c++) p.push_back(*c);
    p.push_back('|');
    std::vector<float> logits;
    model_step(m, kc, p.data(), int(p.size()), AttnPolicy{}, logits, true);
    std::string got;
    Sampler s = sampler_create({});
    for (int i = 0; i < 6; i++) {
      int t = sample(s, logits.data(), m.cfg.vocab);
      got += char(t);
      model_step(m, kc, &t, 1, parse_policy("topk:k=4"), logits, true);
    }
    std::printf("copy (%s): '%s' -> '%s'\n", GetParam(), w, got.c_str());
    exact += got == w;
  }
  EXPECT_GE(exact, 2);
  // Held-out exact-match accuracy, full and top-k decoding (k = 4 of up to 14 keys).
  EvalResult full = task_accuracy(m, cfg.task, 50, 99, AttnPolicy{}, AttnPolicy{});
  EvalResult topk = task_accuracy(m, cfg.task, 50, 99, AttnPolicy{}, parse_policy("topk:k=4"));
  std::printf("copy (%s): accuracy full decode %.2f, top-k decode %.2f\n", GetParam(),
              full.accuracy(), topk.accuracy());
  EXPECT_GE(full.accuracy(), 0.9);
  EXPECT_GE(topk.accuracy(), 0.8);
  remove_tree(out);
}

INSTANTIATE_TEST_SUITE_P(Attention, TrainCopy, testing::Values("full", "topk:k=4"));
