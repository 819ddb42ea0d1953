// The batched engine on the CPU: ragged batches of sequences decode as each would alone,
// activation recomputation gives the backward's exact gradient, a copied cache decodes like
// the original, and eval's batches give the scores of one-example batches.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.h"
#include "eval/eval.h"
#include "model/decode.h"
#include "model/forward.h"
#include "model/infer.h"

using namespace topk;

static Model tiny_model(Arch arch, uint64_t seed) {
  ModelConfig c;
  c.arch = arch;
  c.hidden = 32, c.inter = 48, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 8;
  c.vocab = 40, c.rms_eps = 1e-5, c.attention_bias = arch != Arch::qwen3;
  Model m = model_create(c);
  model_init(m, seed, 0.3f);
  return m;
}

static std::vector<int> tokens(Rng& r, int n, int V) {
  std::vector<int> t(static_cast<size_t>(n));
  for (int& x : t) x = int(r.below(uint64_t(V)));
  return t;
}

static float max_diff(const float* a, const float* b, size_t n) {
  float d = 0;
  for (size_t i = 0; i < n; i++) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

class RaggedDecode : public testing::TestWithParam<const char*> {};

// Three sequences of different prompt lengths in one cache, prefilled together and then decoded
// together (one of them sits out a step), against each run alone in a cache of its own.
TEST_P(RaggedDecode, BatchEqualsEachAlone) {
  for (Arch arch : {Arch::llama, Arch::qwen3}) {
    Model m = tiny_model(arch, 3);
    const int V = m.cfg.vocab;
    const AttnPolicy dec = parse_policy(GetParam());
    Rng r(17);
    std::vector<std::vector<int>> prompts = {tokens(r, 9, V), tokens(r, 3, V), tokens(r, 14, V)};
    std::vector<std::vector<int>> steps = {tokens(r, 3, V), tokens(r, 3, V), tokens(r, 3, V)};
    KVCache kc = kv_cache_create(m, 3, 20);
    std::vector<float> batch_logits;
    StepScratch s;
    StepOpts o;
    o.scratch = &s;
    model_step(m, kc, prompts, AttnPolicy{}, batch_logits, o);
    std::vector<std::vector<float>> got(3);
    for (int b = 0; b < 3; b++) got[size_t(b)].assign(batch_logits.begin() + b * V, batch_logits.begin() + (b + 1) * V);
    for (int t = 0; t < 3; t++) {
      std::vector<std::vector<int>> in(3);
      for (int b = 0; b < 3; b++)
        if (!(t == 1 && b == 1)) in[size_t(b)] = {steps[size_t(b)][size_t(t)]};  // b = 1 skips step 1
      model_step(m, kc, in, dec, batch_logits, o);
      for (int b = 0; b < 3; b++)
        if (!in[size_t(b)].empty())
          got[size_t(b)].insert(got[size_t(b)].end(), batch_logits.begin() + b * V,
                                batch_logits.begin() + (b + 1) * V);
    }
    EXPECT_EQ(kc.len, (std::vector<int32_t>{12, 5, 17}));
    for (int b = 0; b < 3; b++) {
      KVCache one = kv_cache_create(m, 1, 20);
      std::vector<float> logits, want;
      model_step(m, one, prompts[size_t(b)].data(), int(prompts[size_t(b)].size()), AttnPolicy{},
                 logits, true);
      want = logits;
      for (int t = 0; t < 3; t++) {
        if (t == 1 && b == 1) continue;
        model_step(m, one, &steps[size_t(b)][size_t(t)], 1, dec, logits, true);
        want.insert(want.end(), logits.begin(), logits.end());
      }
      ASSERT_EQ(got[size_t(b)].size(), want.size());
      EXPECT_LE(max_diff(got[size_t(b)].data(), want.data(), want.size()), 2e-5f)
          << arch_name(arch) << " sequence " << b;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, RaggedDecode,
                         testing::Values("full", "topk:k=3", "topk:ratio=0.3,share=group",
                                         "window:w=4,sink=1", "oracle:k=4,precision=0.5"),
                         [](const testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// Recomputing each layer in the backward gives the same gradient, bit for bit.
TEST(ModelBatch, RecomputeGivesTheSameGradient) {
  for (const char* pol : {"full", "topk:k=3"}) {
    Model m = tiny_model(Arch::qwen3, 5);
    Rng r(2);
    Batch b = make_batch({tokens(r, 11, m.cfg.vocab), tokens(r, 6, m.cfg.vocab)});
    std::vector<std::vector<float>> g;
    for (bool rc : {false, true}) {
      Acts a;
      a.recompute = rc;
      model_forward(m, b, parse_policy(pol), a);
      model_loss(m, b, a, float(1.0 / loss_count(b)));
      Buffer grad(DType::f32, {m.numel});
      model_backward(m, b, parse_policy(pol), a, grad);
      g.emplace_back(grad.ptr<float>(), grad.ptr<float>() + m.numel);
    }
    EXPECT_EQ(g[0], g[1]) << pol;
  }
}

// A prefilled cache copied decodes exactly like the original; the greedy loop stops each
// sequence at its own budget.
TEST(ModelBatch, CopiedCacheAndGreedyBudgets) {
  Model m = tiny_model(Arch::llama, 7);
  Rng r(4);
  std::vector<std::vector<int>> prompts = {tokens(r, 6, m.cfg.vocab), tokens(r, 10, m.cfg.vocab)};
  StepScratch s;
  KVCache a = prefill_prompts(m, prompts, 5, AttnPolicy{}, s);
  KVCache b = kv_cache_create(m, a.batch, a.max_len);
  kv_cache_copy(b, a);
  std::vector<int> last = {prompts[0].back(), prompts[1].back()}, budget = {5, 2};
  std::vector<std::vector<int>> out_a(2), out_b(2);
  greedy_decode(m, a, last, budget, {}, AttnPolicy{}, false,
                [&](int i, int t, const std::vector<AttnStats>*) {
                  out_a[size_t(i)].push_back(t);
                  return true;
                },
                s);
  greedy_decode(m, b, last, budget, {}, AttnPolicy{}, false,
                [&](int i, int t, const std::vector<AttnStats>*) {
                  out_b[size_t(i)].push_back(t);
                  return true;
                },
                s);
  EXPECT_EQ(out_a, out_b);
  EXPECT_EQ(out_a[0].size(), 5u);
  EXPECT_EQ(out_a[1].size(), 2u);
  EXPECT_EQ(a.len, (std::vector<int32_t>{10, 11}));
}

// eval: batches of several examples score as batches of one.
TEST(ModelBatch, EvalBatchesScoreAsSingleExamples) {
  ModelConfig c;
  c.hidden = 32, c.inter = 48, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 8;
  c.vocab = 259, c.tokenizer.present = true, c.bos = 256, c.eos = 257, c.pad = 258;
  c.max_pos = 512;
  Model m = model_create(c);
  model_init(m, 9, 0.2f);
  eval::EvalOpts o;
  o.tasks = {"passkey"};
  o.lengths = {200};
  o.samples = 5;
  o.policies = {"full", "topk:k=8", "oracle:k=8,precision=0.5"};
  std::vector<eval::Report> reps;
  for (int batch : {1, 3}) {
    o.batch = batch;
    reps.push_back(eval::run(m, o));
  }
  ASSERT_EQ(reps[0].cells.size(), reps[1].cells.size());
  for (size_t i = 0; i < reps[0].cells.size(); i++) {
    const eval::Cell &x = reps[0].cells[i], &y = reps[1].cells[i];
    EXPECT_EQ(x.predictions, y.predictions) << x.policy;
    EXPECT_DOUBLE_EQ(x.score, y.score);
    EXPECT_EQ(x.decode_steps, y.decode_steps);
    EXPECT_NEAR(x.mass, y.mass, 1e-5);
    EXPECT_NEAR(x.entropy, y.entropy, 1e-4);
  }
}
