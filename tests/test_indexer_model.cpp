// The Lightning Indexer in the engine (CPU): config fields and parameter names round-trip, an
// indexer added to a folder without one, indexer / quest / qkeys decode (a budget covering the
// context equals full attention; statistics recorded), the indexer's training gradient (dense
// and sparse stages) and the model's gradient under the indexer's selection against central
// differences, and the run-file keys of the two training stages with exact resume.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "core/json.h"
#include "core/rng.h"
#include "eval/eval.h"
#include "model/forward.h"
#include "model/infer.h"
#include "model/selectors.h"
#include "topk/approx.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace topk;

namespace {

std::string tmp(const char* name) {
  return testing::TempDir() + "topk_ix_" + std::to_string(getpid()) + "_" + name;
}

ModelConfig tiny_config(bool indexer) {
  ModelConfig c;
  c.arch = Arch::llama;
  c.hidden = 16, c.inter = 24, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 4;
  c.vocab = 23, c.rms_eps = 1e-5;
  if (indexer) c.index_n_heads = 3, c.index_head_dim = 8, c.index_topk = 3, c.index_rope_head_dim = 4;
  return c;
}

Model random_model(const ModelConfig& c, uint64_t seed, float scale) {
  Model m = model_create(c);
  Rng rng(seed);
  for (const auto& p : m.params) {
    const bool norm = p.name.find("norm.weight") != std::string::npos;
    const bool bias = p.name.find(".bias") != std::string::npos;
    for (int64_t i = 0; i < p.numel; i++)
      m.host()[p.offset + size_t(i)] = norm ? 1.0f + 0.3f * rng.normal() : bias ? 0.2f * rng.normal() : scale * rng.normal();
  }
  return m;
}

}  // namespace

TEST(IndexerModel, ConfigRoundTripsAndParamsAreNamed) {
  const std::string text = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 16,
    "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 23, "index_n_heads": 3, "index_head_dim": 8,
    "index_topk": 5})";
  ModelConfig c = config_from_json_text(text, "cfg");
  EXPECT_EQ(c.index_n_heads, 3);
  EXPECT_EQ(c.index_head_dim, 8);
  EXPECT_EQ(c.index_topk, 5);
  EXPECT_EQ(c.index_rope_head_dim, 4);  // dI / 2 by default
  EXPECT_TRUE(c.ignored_keys.empty());
  ModelConfig back = config_from_json_text(config_to_json_text(c), "again");
  EXPECT_EQ(back.index_n_heads, 3);
  EXPECT_EQ(back.index_topk, 5);
  EXPECT_EQ(back.index_rope_head_dim, 4);
  EXPECT_EQ(config_to_json_text(tiny_config(false)).find("index_"), std::string::npos);
  // All three fields or none; sizes checked.
  EXPECT_THROW(config_from_json_text(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 16,
    "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 9,
    "index_n_heads": 3})", "cfg"), Error);
  EXPECT_THROW(config_from_json_text(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 16,
    "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 9,
    "index_n_heads": 3, "index_head_dim": 7, "index_topk": 2})", "cfg"), Error);

  Model m = model_create(c);
  Model plain = model_create(tiny_config(false));
  const int64_t H = 16, extra = 2 * (3 * 8 * H + 8 * H + 8 + 8 + 3 * H);
  EXPECT_EQ(m.numel, plain.numel + extra);
  EXPECT_EQ(int64_t(m.indexer_begin), plain.numel);
  EXPECT_EQ(m.indexer_first_param, plain.params.size());
  std::vector<std::string> names;
  for (size_t i = m.indexer_first_param; i < m.params.size(); i++) names.push_back(m.params[i].name);
  EXPECT_EQ(names[0], "model.layers.0.self_attn.indexer.wq.weight");
  EXPECT_EQ(names[1], "model.layers.0.self_attn.indexer.wk.weight");
  EXPECT_EQ(names[2], "model.layers.0.self_attn.indexer.k_norm.weight");
  EXPECT_EQ(names[3], "model.layers.0.self_attn.indexer.k_norm.bias");
  EXPECT_EQ(names[4], "model.layers.0.self_attn.indexer.weights_proj.weight");
  EXPECT_EQ(m.params[m.indexer_first_param].shape, (std::vector<int64_t>{24, 16}));
}

TEST(IndexerModel, SavesLoadsAndAddsToAFolderWithout) {
  const std::string d1 = tmp("with"), d2 = tmp("without");
  Model m = random_model(tiny_config(true), 3, 0.3f);
  model_save(d1, m);
  Model back = model_load(d1);
  EXPECT_EQ(model_host_weights(back), model_host_weights(m));
  EXPECT_EQ(back.cfg.index_topk, 3);
  // A folder without an indexer loads into a model with one; the indexer keeps its values.
  Model base = random_model(tiny_config(false), 4, 0.3f);
  model_save(d2, base);
  Model grown = random_model(tiny_config(true), 5, 0.3f);
  const std::vector<float> before = model_host_weights(grown);
  model_load_into(grown, d2, true);
  const std::vector<float> after = model_host_weights(grown), bw = model_host_weights(base);
  for (size_t i = 0; i < grown.indexer_begin; i++) ASSERT_EQ(after[i], bw[i]) << i;
  for (size_t i = grown.indexer_begin; i < after.size(); i++) ASSERT_EQ(after[i], before[i]) << i;
  EXPECT_THROW(model_load_into(grown, d2, false), Error);  // missing tensors are errors otherwise
  remove_tree(d1);
  remove_tree(d2);
}

// Decoding under a selector whose budget covers the whole context is full attention.
TEST(IndexerModel, CoveringBudgetsDecodeLikeFullAttention) {
  Model m = random_model(tiny_config(true), 7, 0.3f);
  Rng rng(9);
  std::vector<int> prompt(12);
  for (int& t : prompt) t = int(rng.below(23));
  auto decode = [&](const char* policy, std::vector<std::vector<AttnStats>>* stats) {
    KVCache kc = kv_cache_create(m, 2, 20);
    std::vector<float> lg;
    model_step(m, kc, {prompt, std::vector<int>(prompt.begin(), prompt.begin() + 7)}, AttnPolicy{}, lg);
    std::vector<float> all;
    StepOpts o;
    o.stats = stats;
    for (int s = 0; s < 3; s++) {
      model_step(m, kc, {{int(s + 1)}, {int(s + 4)}}, parse_policy(policy), lg, o);
      all.insert(all.end(), lg.begin(), lg.end());
    }
    return all;
  };
  const std::vector<float> full = decode("full", nullptr);
  for (const char* p : {"indexer:k=16", "quest:page=4,k=16", "quest:page=3,pages=6", "quest:page=4,pages=4,k=16",
                        "qkeys:bits=8,k=16", "qkeys:bits=4,ratio=1,rescore=1"}) {
    SCOPED_TRACE(p);
    std::vector<std::vector<AttnStats>> st;
    const std::vector<float> got = decode(p, &st);
    ASSERT_EQ(got.size(), full.size());
    for (size_t i = 0; i < got.size(); i++) ASSERT_NEAR(got[i], full[i], 2e-5f) << i;
    ASSERT_EQ(st.size(), 2u);
    for (const auto& layer : st[0]) {
      EXPECT_EQ(layer.budget, layer.visible);
      for (float x : layer.precision) EXPECT_FLOAT_EQ(x, 1.0f);
      for (float x : layer.mass) EXPECT_NEAR(x, 1.0f, 1e-5);
    }
  }
}

// With a small budget the selectors choose fewer keys; their statistics stay meaningful.
TEST(IndexerModel, SmallBudgetsRecordPrecisionAndMass) {
  Model m = random_model(tiny_config(true), 8, 0.4f);
  Rng rng(10);
  std::vector<int> prompt(30);
  for (int& t : prompt) t = int(rng.below(23));
  for (const char* p : {"indexer", "indexer:k=5", "quest:page=4,k=8", "quest:page=4,pages=3,k=6",
                        "qkeys:bits=8,k=6", "qkeys:bits=4,k=6,rescore=1"}) {
    SCOPED_TRACE(p);
    KVCache kc = kv_cache_create(m, 1, 40);
    std::vector<float> lg;
    model_step(m, kc, {prompt}, AttnPolicy{}, lg);
    std::vector<std::vector<AttnStats>> st;
    StepOpts o;
    o.stats = &st;
    model_step(m, kc, {{3}}, parse_policy(p), lg, o);
    const AttnPolicy pol = parse_policy(p);
    for (const auto& layer : st[0]) {
      EXPECT_EQ(layer.visible, 31);
      const int64_t want = pol.kind == PolicyKind::indexer ? (pol.sel.k ? pol.sel.k : 3)
                           : pol.kind == PolicyKind::quest && pol.pages == 0 ? 8 : 6;
      EXPECT_EQ(layer.budget, want);
      for (float x : layer.precision) {
        EXPECT_GE(x, 0.0f);
        EXPECT_LE(x, 1.0f);
      }
      for (float x : layer.mass) EXPECT_LE(x, 1.0f + 1e-5f);
      // int8 keys with rescoring find the exact top-k of random keys.
      if (pol.kind == PolicyKind::qkeys && pol.bits == 8) {
        for (float x : layer.precision) EXPECT_GE(x, 0.83f);
      }
    }
  }
}

// An FP8 indexer cache holds exactly the quantisation of the keys a float cache holds, takes
// (dI + 4) bytes a key, and decodes under the indexer policy (with a covering budget exactly
// like full attention).
TEST(IndexerModel, Fp8IndexerCache) {
  Model m = random_model(tiny_config(true), 11, 0.3f);
  const ModelConfig& c = m.cfg;
  Rng rng(12);
  std::vector<int> prompt(25);
  for (int& t : prompt) t = int(rng.below(23));
  const CacheOpts fp8{.indexer_fp8 = true};
  EXPECT_EQ(kv_cache_bytes(c, 2, 40, DType::f32, fp8) - kv_cache_bytes(c, 2, 40, DType::f32),
            int64_t(c.layers) * 2 * 40 * (c.index_head_dim + 4 - c.index_head_dim * 4));
  auto decode = [&](const char* policy, bool f8, KVCache* keep) {
    KVCache kc = kv_cache_create(m, 2, 40, CacheOpts{.indexer_fp8 = f8});
    std::vector<float> lg;
    model_step(m, kc, {prompt, std::vector<int>(prompt.begin(), prompt.begin() + 9)}, AttnPolicy{}, lg);
    std::vector<float> all;
    for (int s = 0; s < 3; s++) {
      model_step(m, kc, {{int(s + 1)}, {int(s + 4)}}, parse_policy(policy), lg);
      all.insert(all.end(), lg.begin(), lg.end());
    }
    if (keep) *keep = std::move(kc);
    return all;
  };
  KVCache kf, k8;
  const std::vector<float> full = decode("full", false, &kf);
  decode("full", true, &k8);
  ASSERT_EQ(k8.ki.size(), size_t(c.layers));
  ASSERT_EQ(k8.ki_scale.size(), size_t(c.layers));
  for (int l = 0; l < c.layers; l++) {
    EXPECT_EQ(k8.ki[size_t(l)].view().dtype, DType::f8e4m3);
    Buffer q8(DType::f8e4m3, {2, 40, 1, c.index_head_dim}), qs(DType::f32, {2, 40});
    indexer_quantize_keys(kf.ki[size_t(l)], q8, qs);
    for (int b = 0; b < 2; b++)
      for (int t = 0; t < kf.len[size_t(b)]; t++) {
        const int64_t r = b * 40 + t;
        ASSERT_EQ(k8.ki_scale[size_t(l)].ptr<float>()[r], qs.ptr<float>()[r]) << l << " " << r;
        ASSERT_EQ(0, std::memcmp(k8.ki[size_t(l)].ptr<uint8_t>() + r * c.index_head_dim,
                                 q8.ptr<uint8_t>() + r * c.index_head_dim, size_t(c.index_head_dim)));
      }
  }
  const std::vector<float> cover = decode("indexer:k=64", true, nullptr);
  ASSERT_EQ(cover.size(), full.size());
  for (size_t i = 0; i < cover.size(); i++) ASSERT_NEAR(cover[i], full[i], 2e-5f) << i;
  // A small budget selects by the FP8 scores (their agreement with the reference is the op
  // tests'); here the decode runs and stays finite. (On this random model one flipped key of
  // six moves the logits by several units, so they are not compared with the float cache's.)
  for (float x : decode("indexer:k=6", true, nullptr)) ASSERT_TRUE(std::isfinite(x));
  // A cache copy keeps the format; copying across formats is an error.
  KVCache k8b = kv_cache_create(m, 2, 40, fp8);
  kv_cache_copy(k8b, k8);
  EXPECT_EQ(0, std::memcmp(k8b.ki_scale[0].ptr<float>(), k8.ki_scale[0].ptr<float>(), 2 * 40 * 4));
  EXPECT_THROW(kv_cache_copy(kf, k8), Error);
  Model plain = random_model(tiny_config(false), 1, 0.3f);
  EXPECT_THROW(kv_cache_create(plain, 1, 4, fp8), Error);
}

TEST(IndexerModel, IndexerPolicyNeedsAnIndexer) {
  Model m = random_model(tiny_config(false), 1, 0.3f);
  KVCache kc = kv_cache_create(m, 1, 4);
  std::vector<float> lg;
  try {
    model_step(m, kc, {{1, 2}}, parse_policy("indexer"), lg);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a model with a Lightning Indexer"), std::string::npos) << e.what();
  }
  Batch b = make_batch({{1, 2, 3}});
  Acts a;
  EXPECT_THROW(model_forward(m, b, parse_policy("indexer"), a), Error);
  EXPECT_THROW(model_forward(m, b, parse_policy("quest:page=4,k=4"), a), Error);  // decode only
}

namespace {

// Everything one forward with indexer training gives: the KL summed over layers and rows, the
// gradient, and the selections (to skip perturbations that change them).
struct IxRun {
  double kl = 0, lm = 0;
  std::vector<float> grad;
  std::vector<std::vector<int32_t>> sel;
};
IxRun run_ix(const Model& m, const Batch& b, const AttnPolicy& pol, bool sparse, bool train) {
  IxRun r;
  Acts a;
  Buffer g(DType::f32, {m.numel});
  IndexerTrain tr;
  tr.grad = g;
  tr.sparse = sparse;
  if (train) a.ix_train = &tr;
  model_forward(m, b, pol, a);
  r.lm = model_loss(m, b, a, float(1.0 / loss_count(b))) / loss_count(b);
  if (!train) model_backward(m, b, pol, a, g);
  r.kl = tr.loss;
  r.grad.assign(g.ptr<float>(), g.ptr<float>() + m.numel);
  for (const LayerActs& la : a.L)
    if (la.ix.one.numel() > 0) {
      const int32_t* p = la.ix.one.ptr<int32_t>();
      r.sel.emplace_back(p, p + b.size() * la.ix.K);
    }
  return r;
}

// Central differences of the indexer's KL (train) or the LM loss (!train) against base.grad at
// `per_param` random entries of each parameter in [p0, p1), with |ana - num| <= abs_tol +
// rel_tol |num|. An entry whose nudge changes a selection is skipped (the loss jumps there);
// returns {entries checked, entries skipped}.
std::pair<int, int> check_grads(Model& m, const Batch& b, const AttnPolicy& pol, bool sparse,
                                bool train, const IxRun& base, size_t p0, size_t p1, int per_param,
                                float eps, double abs_tol, double rel_tol, uint64_t seed) {
  Rng rng(seed);
  int checked = 0, flipped = 0;
  for (size_t pi = p0; pi < p1; pi++) {
    const ParamInfo& p = m.params[pi];
    for (int s = 0; s < per_param; s++) {
      const size_t i = p.offset + size_t(rng.below(uint64_t(p.numel)));
      float* w = m.host();
      const float w0 = w[i];
      w[i] = w0 + eps;
      const IxRun up = run_ix(m, b, pol, sparse, train);
      w[i] = w0 - eps;
      const IxRun dn = run_ix(m, b, pol, sparse, train);
      w[i] = w0;
      if (up.sel != base.sel || dn.sel != base.sel) {
        flipped++;
        continue;
      }
      const double num = train ? (up.kl - dn.kl) / (2.0 * eps) : (up.lm - dn.lm) / (2.0 * eps);
      EXPECT_NEAR(base.grad[i], num, abs_tol + rel_tol * std::fabs(num)) << p.name << "[" << i - p.offset << "]";
      checked++;
    }
  }
  return {checked, flipped};
}

}  // namespace

// The indexer's KL gradient (taken in the forward) against central differences of the KL, in
// both stages; the model's parameters get no gradient from it.
TEST(IndexerModel, TrainingGradientIsFiniteDifferences) {
  for (bool sparse : {false, true}) {
    SCOPED_TRACE(sparse ? "sparse" : "dense");
    Model m = random_model(tiny_config(true), 11, 0.5f);
    Batch b = make_batch({{1, 5, 7, 2, 9, 3, 3}, {4, 8, 0, 22, 13, 6, 11, 17, 1}});
    const AttnPolicy pol = parse_policy(sparse ? "indexer" : "full");
    const IxRun base = run_ix(m, b, pol, sparse, true);
    EXPECT_GT(base.kl, 0);
    for (size_t i = 0; i < m.indexer_begin; i++) ASSERT_EQ(base.grad[i], 0.0f) << m.params.size();
    const auto [checked, flipped] = check_grads(m, b, pol, sparse, true, base, m.indexer_first_param,
                                                m.params.size(), 3, 1e-3f, 3e-3, 3e-2, 12);
    EXPECT_GE(checked, 20);
    EXPECT_LE(flipped, checked / 3);
  }
}

// The sparse stage's model gradient: the LM loss under the indexer's selection, through the
// sparse backward, against central differences; the indexer gets no gradient from the LM loss.
TEST(IndexerModel, ModelGradientUnderIndexerSelection) {
  Model m = random_model(tiny_config(true), 13, 0.4f);
  Batch b = make_batch({{1, 5, 7, 2, 9, 3, 3}, {4, 8, 0, 22, 13, 6, 11, 17, 1}}, {0, 2});
  const AttnPolicy pol = parse_policy("indexer");
  const IxRun base = run_ix(m, b, pol, true, false);
  for (size_t i = m.indexer_begin; i < size_t(m.numel); i++) ASSERT_EQ(base.grad[i], 0.0f);
  const auto [checked, flipped] = check_grads(m, b, pol, true, false, base, 0, m.indexer_first_param,
                                              2, 2e-3f, 2e-3, 2e-2, 14);
  EXPECT_GE(checked, 12);
  EXPECT_LE(flipped, checked / 3);
}

namespace {

std::string base_run(const std::string& out, int steps) {
  return R"({"out": ")" + out + R"(",
    "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1},
    "task": {"name": "ar", "length": 48, "min_length": 40, "loss": "question"},
    "steps": )" + std::to_string(steps) + R"(, "batch_tokens": 256, "lr": 0.003, "warmup": 10,
    "seed": 1, "log_every": 0})";
}

std::string stage_run(const std::string& out, const std::string& init, const char* stage, int steps,
                      const char* extra = "") {
  return R"({"out": ")" + out + R"(", "init": ")" + init + R"(",
    "indexer": {"index_n_heads": 2, "index_head_dim": 16, "index_topk": 4},
    "indexer_stage": ")" + stage + R"(",
    "task": {"name": "ar", "length": 48, "min_length": 40, "loss": "question"},
    "steps": )" + std::to_string(steps) + R"(, "batch_tokens": 256, "lr": 0.003, "warmup": 5,
    "seed": 2, "log_every": 0)" + extra + "}";
}

// Mean retrieval precision of a policy's decode on held-out ar examples (eval's statistics).
double decode_precision(const Model& m, const char* policy) {
  eval::EvalOpts o;
  o.tasks = {"ar"};
  o.lengths = {48};
  o.samples = 20;
  o.seed = 1000;
  o.policies = {policy};
  return eval::run(m, o).cells.at(0).precision;
}

}  // namespace

TEST(IndexerTrain, RunFileKeysAndErrors) {
  TrainConfig c = train_config_from_json_text(stage_run("o", "m", "dense", 3), "run");
  EXPECT_EQ(c.indexer_stage, IndexerStage::dense);
  EXPECT_EQ(c.indexer.heads, 2);
  EXPECT_EQ(c.attention.kind, PolicyKind::full);
  EXPECT_EQ(policy_str(c.eval_attention), "indexer");
  TrainConfig s = train_config_from_json_text(stage_run("o", "m", "sparse", 3), "run");
  EXPECT_EQ(policy_str(s.attention), "indexer");
  // The sparse stage may name its policy in the run file (docs/engine.md).
  TrainConfig sk = train_config_from_json_text(stage_run("o", "m", "sparse", 3,
                                                         R"(, "attention": "indexer:k=3")"), "run");
  EXPECT_EQ(policy_str(sk.attention), "indexer:k=3");
  // A new model with the indexer in "model" or in "indexer".
  TrainConfig n = train_config_from_json_text(R"({"out": "o", "model": {"architectures":
    ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
    "num_attention_heads": 2}, "indexer": {"index_n_heads": 2, "index_head_dim": 8,
    "index_topk": 4, "index_rope_head_dim": 0}, "indexer_stage": "sparse"})", "run");
  EXPECT_EQ(n.model.index_n_heads, 2);
  EXPECT_EQ(n.model.index_rope_head_dim, 0);
  auto error = [](const std::string& text) {
    try {
      train_config_from_json_text(text, "run");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error(stage_run("o", "m", "sideways", 3)).find("indexer_stage 'sideways'"), std::string::npos);
  EXPECT_NE(error(stage_run("o", "m", "dense", 3, R"(, "attention": "topk:k=4")")).find("must be full"),
            std::string::npos);
  EXPECT_NE(error(stage_run("o", "m", "sparse", 3, R"(, "attention": "full")")).find("must be indexer"),
            std::string::npos);
  EXPECT_NE(error(R"({"out": "o", "init": "m", "indexer": {"index_n_heads": 2, "heads": 3}})")
                .find("unknown indexer key 'heads'"), std::string::npos);
}

// A small model trained on ar, then its indexer: the dense stage fits it to the attention
// (precision against exact top-k rises well above an untrained indexer's, the model is
// untouched), the sparse stage trains both, and an interrupted stage resumes exactly.
TEST(IndexerTrain, StagesTrainTheIndexerAndResumeExactly) {
  const std::string base = tmp("base"), dense = tmp("dense"), d0 = tmp("dense0"), sparse = tmp("sparse"),
                    part = tmp("part");
  train_run(train_config_from_json_text(base_run(base, 400), "base"));
  Model dm, d0m, bm = model_load(base + "/checkpoint");
  TrainResult r = train_run(train_config_from_json_text(stage_run(dense, base + "/checkpoint", "dense", 150), "dense"), -1, &dm);
  ASSERT_EQ(r.indexer_losses.size(), 150u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; i++) first += r.indexer_losses[size_t(i)], last += r.indexer_losses[size_t(140 + i)];
  EXPECT_LT(last, 0.7 * first) << "the indexer's KL falls";
  const std::vector<float> bw = model_host_weights(bm), dw = model_host_weights(dm);
  for (size_t i = 0; i < dm.indexer_begin; i++) ASSERT_EQ(dw[i], bw[i]) << "the dense stage froze the model";
  // The same indexer untrained (one step at a negligible rate), for comparison.
  train_run(train_config_from_json_text(stage_run(d0, base + "/checkpoint", "dense", 1, R"(, "lr": 1e-12)"), "d0"), -1, &d0m);
  const double p0 = decode_precision(d0m, "indexer"), p1 = decode_precision(dm, "indexer");
  EXPECT_GT(p1, p0 + 0.1) << "untrained " << p0 << ", trained " << p1;
  std::fprintf(stderr, "indexer precision: untrained %.3f, after the dense stage %.3f\n", p0, p1);

  // Sparse stage from the dense checkpoint: model and indexer both move; KL reported.
  Model sm;
  TrainResult rs = train_run(train_config_from_json_text(stage_run(sparse, dense + "/checkpoint", "sparse", 4), "sparse"), -1, &sm);
  ASSERT_EQ(rs.indexer_losses.size(), 4u);
  for (double x : rs.indexer_losses) EXPECT_TRUE(std::isfinite(x) && x >= 0);
  const std::vector<float> sw = model_host_weights(sm);
  bool model_moved = false, ix_moved = false;
  for (size_t i = 0; i < sw.size(); i++) (i < sm.indexer_begin ? model_moved : ix_moved) |= sw[i] != dw[i];
  EXPECT_TRUE(model_moved);
  EXPECT_TRUE(ix_moved);
  // Resume: 4 sparse steps interrupted after 2 give the uninterrupted run's weights.
  train_run(train_config_from_json_text(stage_run(part, dense + "/checkpoint", "sparse", 4), "part"), 2);
  Model pm;
  TrainResult rest = train_run(train_config_from_json_text(stage_run(part, dense + "/checkpoint", "sparse", 4), "part"), -1, &pm);
  EXPECT_EQ(rest.start_step, 2);
  EXPECT_EQ(model_host_weights(pm), sw);
  EXPECT_EQ(rest.indexer_losses[1], rs.indexer_losses[3]);
  for (const std::string& d : {base, dense, d0, sparse, part}) remove_tree(d);
}
