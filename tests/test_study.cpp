// What the studies (tools/experiments, docs/results.md) add: task mixtures for training, the
// entropy-adaptive budget (topk:...,adapt=entropy) and the demo's shipped-model path.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "cli_util.h"
#include "core/json.h"
#include "core/rng.h"
#include "eval/eval.h"
#include "model/attend.h"
#include "model/forward.h"
#include "model/policy.h"
#include "train/data.h"
#include "train/trainer.h"

using namespace topk;
namespace fs = std::filesystem;

static Tokenizer bytes_tok() {
  TokenizerConfig t;
  t.present = true;
  return tokenizer_bytes(t);
}

static std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- task mixtures ----------------------------------------------------------------------------

static TaskOpts suite(const std::string& name, int length) {
  TaskOpts t;
  t.name = name;
  t.length = length;
  return t;
}

TEST(StudyMix, DrawsByWeightDeterministically) {
  TaskOpts mix;
  mix.name = "mix";
  mix.mix = {suite("passkey", 200), suite("mqar", 160), suite("ar", 48)};
  mix.weights = {3, 1, 0};
  validate_task(mix);
  std::map<int, int> count;
  Rng rng(7), again(7);
  const int n = 400;
  for (int i = 0; i < n; i++) {
    Example e = make_example(mix, bytes_tok(), rng);
    Example f = make_example(mix, bytes_tok(), again);
    ASSERT_EQ(e.tokens, f.tokens);
    ASSERT_GE(e.task, 0);
    count[e.task]++;
    // Each example is its item's: the length of its own task, BOS first, EOS last.
    EXPECT_EQ(e.tokens.front(), 256);
    EXPECT_EQ(e.tokens.back(), 257);
    const int len = mix.mix[size_t(e.task)].length;
    EXPECT_LE(int(e.tokens.size()), len + 1);
    EXPECT_LT(e.loss_from, e.answer_from);
  }
  EXPECT_EQ(count[2], 0);                          // weight 0: never
  EXPECT_NEAR(count[0] / double(n), 0.75, 0.07);   // 3 : 1
  EXPECT_NEAR(count[1] / double(n), 0.25, 0.07);
  // Batches of a mix are a function of (seed, step, micro) like any task's.
  Batch a = make_task_batch(mix, bytes_tok(), 3, 11, 0, 1000);
  Batch b = make_task_batch(mix, bytes_tok(), 3, 11, 0, 1000);
  EXPECT_EQ(a.tokens, b.tokens);
}

TEST(StudyMix, RunFileItemsInheritAndRejectMistakes) {
  TrainConfig c = train_config_from_json_text(R"({"out": "x",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1},
    "task": {"name": "mix", "length": 300, "min_length": 200, "mode": "compact", "loss": "question",
             "mix": [{"name": "passkey", "weight": 2},
                     {"name": "mqar", "length": 256, "min_length": 128},
                     {"name": "copy", "min_len": 3, "max_len": 5, "weight": 0.5}]}})", "mix run");
  ASSERT_EQ(c.task.name, "mix");
  ASSERT_EQ(c.task.mix.size(), 3u);
  EXPECT_EQ(c.task.weights, (std::vector<double>{2, 1, 0.5}));
  EXPECT_EQ(c.task.mix[0].length, 300);       // inherited
  EXPECT_EQ(c.task.mix[0].min_length, 200);
  EXPECT_EQ(c.task.mix[0].mode, "compact");
  EXPECT_EQ(c.task.mix[0].loss, "question");
  EXPECT_EQ(c.task.mix[1].length, 256);       // its own
  EXPECT_EQ(c.task.mix[1].min_length, 128);
  EXPECT_EQ(c.task.mix[2].max_len, 5);
  auto bad = [](const std::string& task) {
    return error_of([&] {
      train_config_from_json_text(R"({"out": "x", "model": {"architectures": ["LlamaForCausalLM"],
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1}, "task": )" + task + "}", "run");
    });
  };
  EXPECT_NE(bad(R"({"name": "mix", "length": 256, "mix": [{"name": "passkey", "wieght": 1}]})")
                .find("unknown mix item key 'wieght'"), std::string::npos);
  EXPECT_NE(bad(R"({"name": "mix", "length": 256, "mix": [{"weight": 1}]})")
                .find("needs a \"name\""), std::string::npos);
  EXPECT_NE(bad(R"({"name": "mix", "length": 256, "mix": [{"name": "passkey", "weight": 0}]})")
                .find("weights sum to 0"), std::string::npos);
  EXPECT_NE(bad(R"({"name": "mix", "length": 256, "mix": [{"name": "passkey", "weight": -1}]})")
                .find("'weight' must be a number in [0, "), std::string::npos);
  EXPECT_NE(bad(R"({"name": "mix", "length": 256, "mix": [{"name": "mix"}]})")
                .find("itself a mix"), std::string::npos);
  EXPECT_NE(bad(R"({"name": "mix", "length": 256})").find("give \"mix\""), std::string::npos);
  EXPECT_NE(bad(R"({"name": "passkey", "length": 256, "mix": [{"name": "mqar"}]})")
                .find("needs \"name\": \"mix\""), std::string::npos);
  EXPECT_NE(bad(R"({"name": "mix", "mix": [{"name": "passkey"}]})").find("set \"length\""),
            std::string::npos);
}

// ---- entropy-adaptive budget ------------------------------------------------------------------

TEST(StudyAdapt, BudgetsSumToTheUniformTotal) {
  // Equal entropies: every head gets the uniform W.
  for (int64_t W : {1, 3, 7}) {
    std::vector<double> e(4, 1.5);
    EXPECT_EQ(entropy_budgets(e, W, 50), std::vector<int64_t>(4, W));
    std::vector<double> z(4, 0.0);  // all zero: equal shares too
    EXPECT_EQ(entropy_budgets(z, W, 50), std::vector<int64_t>(4, W));
  }
  // One key per head first, the rest by entropy: (0, 1, 3) nats, W = 5 -> 15 keys, 12 shared
  // as 0 : 3 : 9.
  EXPECT_EQ(entropy_budgets(std::vector<double>{0.0, 1.0, 3.0}, 5, 100),
            (std::vector<int64_t>{1, 1 + 3, 1 + 9}));
  // Fractions: (1, 2) nats, W = 4 -> 6 shared as 2 : 4; (1, 1, 1, 2) W = 3 -> 8 shared as
  // 1.6 x 3 and 3.2: integer parts 1, 1, 1, 3 and the 2 left to the largest fractions (0.6 each,
  // the lower heads first).
  EXPECT_EQ(entropy_budgets(std::vector<double>{1.0, 2.0}, 4, 100), (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(entropy_budgets(std::vector<double>{1.0, 1.0, 1.0, 2.0}, 3, 100),
            (std::vector<int64_t>{3, 3, 2, 4}));
  // The cap: no head past n keys; what it cannot take goes to the others.
  EXPECT_EQ(entropy_budgets(std::vector<double>{0.1, 5.0}, 6, 8), (std::vector<int64_t>{4, 8}));
  Rng rng(3);
  for (int trial = 0; trial < 300; trial++) {
    const int64_t H = 1 + int64_t(rng.below(8)), n = 1 + int64_t(rng.below(60));
    const int64_t W = 1 + int64_t(rng.below(uint64_t(n)));
    std::vector<double> e(static_cast<size_t>(H));
    for (double& x : e) x = rng.below(4) == 0 ? 0.0 : rng.uniform() * std::log(double(n) + 1);
    std::vector<int64_t> b = entropy_budgets(e, W, n);
    EXPECT_EQ(std::accumulate(b.begin(), b.end(), int64_t(0)), H * W);
    for (int64_t h = 0; h < H; h++) {
      EXPECT_GE(b[size_t(h)], 1);
      EXPECT_LE(b[size_t(h)], n);
      for (int64_t g = 0; g < H; g++) {  // more entropy never gets fewer keys (up to rounding)
        if (e[size_t(g)] > e[size_t(h)] + 1e-12) {
          EXPECT_GE(b[size_t(g)] + 1, b[size_t(h)]);
        }
      }
    }
  }
  EXPECT_THROW(entropy_budgets(std::vector<double>{1.0}, 0, 5), Error);
  EXPECT_THROW(entropy_budgets(std::vector<double>{1.0}, 6, 5), Error);
}

TEST(StudyAdapt, SoftmaxEntropy) {
  std::vector<float> u(10, 0.3f);
  EXPECT_NEAR(softmax_entropy(u.data(), 10), std::log(10.0), 1e-9);
  std::vector<float> one = {0.0f, 80.0f, 0.0f};
  EXPECT_NEAR(softmax_entropy(one.data(), 3), 0.0, 1e-12);
  EXPECT_EQ(softmax_entropy(one.data(), 1), 0.0);
}

TEST(StudyAdapt, PolicyParsesAndRefusesCombinations) {
  AttnPolicy p = parse_policy("topk:ratio=0.05,adapt=entropy");
  EXPECT_EQ(p.kind, PolicyKind::topk);
  EXPECT_EQ(p.adapt, BudgetAdapt::entropy);
  EXPECT_EQ(policy_str(p), "topk:ratio=0.05,adapt=entropy");
  EXPECT_EQ(policy_str(parse_policy("topk:k=8,min_k=2,adapt=entropy")),
            "topk:k=8,min_k=2,adapt=entropy");
  EXPECT_EQ(parse_policy("topk:k=8,adapt=none").adapt, BudgetAdapt::none);
  for (const char* bad : {"topk:k=8,adapt=entropy,share=group", "topk:k=8,adapt=entropy,sink=2",
                          "topk:k=8,adapt=entropy,window=4"})
    EXPECT_NE(error_of([&] { parse_policy(bad); }).find("adapt=entropy gives each query head"),
              std::string::npos) << bad;
  EXPECT_NE(error_of([] { parse_policy("topk:k=8,adapt=perplexity"); })
                .find("adapt must be entropy or none"), std::string::npos);
  EXPECT_NE(error_of([] { parse_policy("oracle:k=8,precision=1,adapt=entropy"); })
                .find("takes no option 'adapt'"), std::string::npos);
}

namespace {
struct Qkv {
  std::vector<float> q, k, v, o, lse;
  TensorView vq, vk, vv, vo, vl;
};
void set_views(Qkv& x, int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D) {
  x.vq = make_view(x.q.data(), DType::f32, {1, T, Hq, D});
  x.vk = make_view(x.k.data(), DType::f32, {1, S, Hkv, D});
  x.vv = make_view(x.v.data(), DType::f32, {1, S, Hkv, D});
  x.vo = make_view(x.o.data(), DType::f32, {1, T, Hq, D});
  x.vl = make_view(x.lse.data(), DType::f32, {1, T, Hq});
}
Qkv random_qkv(int64_t T, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, uint64_t seed,
               const std::vector<float>& head_scale = {}) {
  Qkv x;
  Rng rng(seed);
  x.q.resize(size_t(T * Hq * D)), x.k.resize(size_t(S * Hkv * D)), x.v.resize(x.k.size());
  for (auto* a : {&x.q, &x.k, &x.v})
    for (float& f : *a) f = rng.normal();
  if (!head_scale.empty())  // sharper or flatter attention per query head
    for (int64_t i = 0; i < T * Hq * D; i++) x.q[size_t(i)] *= head_scale[size_t((i / D) % Hq)];
  x.o.resize(x.q.size()), x.lse.resize(size_t(T * Hq));
  set_views(x, T, S, Hq, Hkv, D);
  return x;
}
void attend(const std::string& policy, Qkv& x, std::vector<std::vector<AttnStats>>* st) {
  std::vector<int32_t> sq = {int32_t(x.vq.shape[1])}, sk = {int32_t(x.vk.shape[1])};
  policy_attention(parse_policy(policy), 0, x.vq, x.vk, x.vv, sq, sk, x.vo, x.vl, st);
}
}  // namespace

// Each head attends to exactly its own top-W_h keys, with the budgets of entropy_budgets from
// its full-softmax entropy; the output equals sparse attention over those keys.
TEST(StudyAdapt, SelectsEachHeadsTopBudget) {
  const int64_t T = 3, S = 90, Hq = 4, Hkv = 2, D = 16;
  Qkv x = random_qkv(T, S, Hq, Hkv, D, 21, {4.0f, 0.2f, 1.0f, 2.0f});
  AttnOpts opts;
  opts.causal = true;
  std::vector<float> sc(size_t(T * Hq * S));
  attention_scores(x.vq, x.vk, Seqs{}, opts, make_view(sc.data(), DType::f32, {1, T, Hq, S}));
  SelectOpts sel;
  sel.ratio = 0.1;
  const int64_t K = Hq * 9;
  std::vector<int32_t> idx(size_t(T * Hq * K));
  std::vector<int32_t> sq = {int32_t(T)}, sk = {int32_t(S)};
  adaptive_select(make_view(sc.data(), DType::f32, {1, T, Hq, S}), sq, sk, sel,
                  make_view(idx.data(), DType::i32, {1, T, Hq, K}));
  for (int64_t t = 0; t < T; t++) {
    const int64_t n = S - T + t + 1, W = int64_t(std::ceil(0.1 * double(n) - 1e-9));
    std::vector<double> ent(static_cast<size_t>(Hq));
    for (int64_t h = 0; h < Hq; h++) ent[size_t(h)] = softmax_entropy(&sc[size_t((t * Hq + h) * S)], n);
    const std::vector<int64_t> want = entropy_budgets(ent, W, n);
    EXPECT_GT(want[1], want[0]);  // the flat head (scale 0.2) gets more than the sharp one
    int64_t total = 0;
    for (int64_t h = 0; h < Hq; h++) {
      const int32_t* row = &idx[size_t((t * Hq + h) * K)];
      std::vector<int32_t> got;
      for (int64_t i = 0; i < K; i++)
        if (row[i] >= 0) got.push_back(row[i]);
      ASSERT_EQ(int64_t(got.size()), want[size_t(h)]);
      total += int64_t(got.size());
      EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
      // Every selected score >= every unselected visible score.
      const float* s = &sc[size_t((t * Hq + h) * S)];
      float lo = INFINITY, hi = -INFINITY;
      std::set<int32_t> in(got.begin(), got.end());
      for (int64_t j = 0; j < n; j++) {
        if (in.count(int32_t(j))) lo = std::min(lo, s[j]);
        else hi = std::max(hi, s[j]);
      }
      EXPECT_GE(lo, hi);
    }
    EXPECT_EQ(total, Hq * W);
  }
  // Through the model's attention: the output is sparse attention over that selection.
  Qkv y = random_qkv(T, S, Hq, Hkv, D, 21, {4.0f, 0.2f, 1.0f, 2.0f});
  attend("topk:ratio=0.1,adapt=entropy", x, nullptr);
  std::vector<float> o2(x.o.size()), l2(x.lse.size());
  sparse_attention_forward(y.vq, y.vk, y.vv, make_view(idx.data(), DType::i32, {1, T, Hq, K}),
                           Seqs{}, opts, make_view(o2.data(), DType::f32, {1, T, Hq, D}),
                           make_view(l2.data(), DType::f32, {1, T, Hq}));
  for (size_t i = 0; i < o2.size(); i++) EXPECT_NEAR(x.o[i], o2[i], 1e-5);
}

// Heads with the same attention (identical queries) get the uniform budget: the adaptive policy
// is then exact top-k. The recorded statistics: rho is the uniform W / n, precision 1.
TEST(StudyAdapt, EqualHeadsAreUniformAndStatsAreRecorded) {
  const int64_t T = 1, S = 64, Hq = 4, Hkv = 4, D = 8;
  Qkv x = random_qkv(T, S, Hq, Hkv, D, 5);
  for (int64_t h = 1; h < Hq; h++)  // every query head the same
    for (int64_t d = 0; d < D; d++) x.q[size_t(h * D + d)] = x.q[size_t(d)];
  for (int64_t j = 0; j < S; j++)  // every KV head the same too
    for (int64_t h = 1; h < Hkv; h++)
      for (int64_t d = 0; d < D; d++) {
        x.k[size_t((j * Hkv + h) * D + d)] = x.k[size_t((j * Hkv) * D + d)];
        x.v[size_t((j * Hkv + h) * D + d)] = x.v[size_t((j * Hkv) * D + d)];
      }
  Qkv y = x;
  set_views(y, T, S, Hq, Hkv, D);
  std::vector<std::vector<AttnStats>> sa, sb;
  attend("topk:k=6,adapt=entropy", x, &sa);
  attend("topk:k=6", y, &sb);
  for (size_t i = 0; i < x.o.size(); i++) EXPECT_NEAR(x.o[i], y.o[i], 1e-6);
  EXPECT_EQ(sa[0][0].budget, 6);
  for (float p : sa[0][0].precision) EXPECT_FLOAT_EQ(p, 1.0f);
  for (int64_t h = 0; h < Hq; h++) EXPECT_NEAR(sa[0][0].mass[size_t(h)], sb[0][0].mass[size_t(h)], 1e-6);
  // Different heads: still precision 1 (each head's own top-W_h) and the mean budget W.
  Qkv z = random_qkv(T, S, Hq, Hkv, D, 8, {3.0f, 0.3f, 1.0f, 1.0f});
  std::vector<std::vector<AttnStats>> sz;
  attend("topk:k=6,adapt=entropy", z, &sz);
  EXPECT_EQ(sz[0][0].budget, 6);
  for (float p : sz[0][0].precision) EXPECT_FLOAT_EQ(p, 1.0f);
}

// Training takes no adaptive policy (it is a decode-time selector).
TEST(StudyAdapt, TrainingRefusesIt) {
  fs::path dir = fs::temp_directory_path() / ("topk_adapt_train_" + std::to_string(getpid()));
  fs::remove_all(dir);
  // Refused when the run file is read, before anything is written.
  const std::string run = R"({"out": ")" + dir.string() + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1},
    "task": {"name": "copy"}, "attention": "topk:k=4,adapt=entropy", "steps": 1,
    "log_every": 0})";
  EXPECT_NE(error_of([&] { train_config_from_json_text(run, "run"); })
                .find("'topk:k=4,adapt=entropy' is a decode-only policy"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir));
}

// ---- the demo's shipped-model path ------------------------------------------------------------

// `topk demo --model DIR` evaluates a model folder (the shipped model's path) instead of training.
TEST(StudyDemo, EvaluatesAGivenModel) {
  fs::path dir = fs::temp_directory_path() / ("topk_demo_model_" + std::to_string(getpid()));
  fs::remove_all(dir);
  TrainConfig cfg = train_config_from_json_text(R"({"out": ")" + dir.string() + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1},
    "task": {"name": "passkey", "length": 170}, "steps": 2, "batch_tokens": 340,
    "log_every": 0})", "run");
  train_run(cfg);
  std::string out;
  ASSERT_EQ(test::run_topk("demo --model " + (dir / "checkpoint").string() + " --dir " +
                               (dir / "demo").string() + " --tasks passkey --lengths 200 "
                               "--samples 2", out), 0) << out;
  EXPECT_NE(out.find("evaluating the shipped model"), std::string::npos) << out;
  EXPECT_NE(out.find("topk:ratio=0.01"), std::string::npos) << out;
  EXPECT_NE(out.find("oracle:k=64,precision=0.5"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir / "demo" / "eval" / "results.csv"));
  EXPECT_FALSE(fs::exists(dir / "demo" / "checkpoint"));  // nothing was trained
  EXPECT_EQ(test::run_topk("demo --model " + (dir / "nothing").string(), out), 1);
  EXPECT_NE(out.find("no config.json"), std::string::npos) << out;
  fs::remove_all(dir);
}
