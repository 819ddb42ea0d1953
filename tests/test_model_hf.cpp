// Golden logits from Hugging Face transformers (tests/data/hf_tiny_*, made by
// tools/hf_make_fixtures.py): Llama with llama3 RoPE scaling and an untied head, Qwen2 with
// q/k/v biases, Qwen3 with q/k norms and a tied head. Also the KV-cache path and bf16 files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "core/json.h"
#include "core/safetensors.h"
#include "model/forward.h"
#include "model/infer.h"

using namespace topk;

static std::string fixture(const char* name) {
  return std::string(TOPK_SOURCE_DIR) + "/tests/data/hf_tiny_" + name;
}

struct Golden {
  std::vector<std::vector<int>> seqs;
  std::vector<float> logits;  // [B, T, V]
};

static Golden load_golden(const std::string& dir, int V) {
  SafeTensors st = st_load(dir + "/golden.safetensors");
  const StTensor* ids = st.find("input_ids");
  EXPECT_TRUE(ids);
  int B = int(ids->shape[0]), T = int(ids->shape[1]);
  Golden g;
  std::vector<int32_t> raw(size_t(B) * T);
  std::memcpy(raw.data(), ids->data, raw.size() * 4);
  for (int b = 0; b < B; b++) g.seqs.emplace_back(raw.begin() + b * T, raw.begin() + (b + 1) * T);
  g.logits.resize(size_t(B) * T * V);
  st_to_f32(st.get("logits", {B, T, V}), g.logits.data(), int64_t(g.logits.size()));
  return g;
}

static float max_abs_diff(const float* a, const float* b, size_t n) {
  float d = 0;
  for (size_t i = 0; i < n; i++) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

class HfGolden : public testing::TestWithParam<const char*> {};

TEST_P(HfGolden, LogitsMatchTransformers) {
  Model m = model_load(fixture(GetParam()));
  const int V = m.cfg.vocab;
  Golden g = load_golden(fixture(GetParam()), V);
  Batch b = make_batch(g.seqs);
  Acts a;
  model_forward(m, b, AttnPolicy{}, a);
  std::vector<float> logits = logits_host(a);
  ASSERT_EQ(logits.size(), g.logits.size());
  float absmax = 0;
  for (float x : g.logits) absmax = std::max(absmax, std::abs(x));
  float d = max_abs_diff(logits.data(), g.logits.data(), g.logits.size());
  std::printf("%s: max abs diff vs transformers %.3g (logits absmax %.3g)\n", GetParam(), d, absmax);
  EXPECT_LE(d, 1e-4f * std::max(1.0f, absmax));
}

TEST_P(HfGolden, KvCacheDecodeMatchesFullForward) {
  Model m = model_load(fixture(GetParam()));
  const int V = m.cfg.vocab;
  Golden g = load_golden(fixture(GetParam()), V);
  const auto& s = g.seqs[1];
  const int T = int(s.size());
  KVCache kc = kv_cache_create(m, 1, T);
  std::vector<float> logits, all;
  model_step(m, kc, s.data(), 5, AttnPolicy{}, logits, false);  // prefill 5 tokens
  all = logits;
  for (int t = 5; t < T; t++) {  // then decode one at a time
    model_step(m, kc, s.data() + t, 1, AttnPolicy{}, logits, true);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  float d = max_abs_diff(all.data(), g.logits.data() + size_t(T) * V, size_t(T) * V);
  EXPECT_LE(d, 1e-4f) << GetParam();
  // top-k decode with a budget that covers the whole context is full attention, exactly.
  KVCache kc2 = kv_cache_create(m, 1, T);
  model_step(m, kc2, s.data(), T - 1, AttnPolicy{}, logits, true);
  model_step(m, kc2, s.data() + T - 1, 1, parse_policy("topk:k=64"), logits, true);
  EXPECT_LE(max_abs_diff(logits.data(), g.logits.data() + size_t(2 * T - 1) * V, size_t(V)), 1e-4f);
  // ... and a small budget changes the logits.
  KVCache kc3 = kv_cache_create(m, 1, T);
  model_step(m, kc3, s.data(), T - 1, AttnPolicy{}, logits, true);
  model_step(m, kc3, s.data() + T - 1, 1, parse_policy("topk:k=2,share=group"), logits, true);
  EXPECT_GT(max_abs_diff(logits.data(), g.logits.data() + size_t(2 * T - 1) * V, size_t(V)), 1e-3f);
}

INSTANTIATE_TEST_SUITE_P(Models, HfGolden, testing::Values("llama", "qwen2", "qwen3"));

TEST(ModelIo, SaveLoadRoundTripF32AndBf16) {
  Model m = model_load(fixture("qwen3"));
  std::string dir = testing::TempDir() + "topk_model_io_" + std::to_string(getpid());
  model_save(dir + "/f32", m);
  Model r = model_load(dir + "/f32");
  EXPECT_EQ(model_host_weights(r), model_host_weights(m));
  EXPECT_EQ(r.cfg.tie_embeddings, true);
  Model h = model_load(fixture("llama"));
  h.cfg.dtype = "bfloat16";
  h.cfg.tokenizer.present = true;
  model_save(dir + "/bf16", h);
  Model r2 = model_load(dir + "/bf16");
  EXPECT_EQ(r2.cfg.dtype, "bfloat16");
  EXPECT_TRUE(r2.cfg.tokenizer.present);
  ASSERT_EQ(r2.numel, h.numel);
  for (int64_t i = 0; i < h.numel; i++) {
    ASSERT_NEAR(r2.host()[i], h.host()[i], std::abs(h.host()[i]) * 4e-3f + 1e-30f) << i;
  }
  // A file missing a tensor is refused with its name.
  SafeTensors st = st_load(dir + "/f32/model.safetensors");
  std::vector<StWrite> ts;
  std::vector<std::vector<float>> keep;
  for (const auto& t : st.tensors) {
    if (t.name == "model.norm.weight") continue;
    keep.emplace_back(size_t(t.numel()));
    st_to_f32(t, keep.back().data(), t.numel());
    ts.push_back({t.name, DType::f32, t.shape, keep.back().data()});
  }
  st_save(dir + "/f32/model.safetensors", ts);
  try {
    model_load(dir + "/f32");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'model.norm.weight'"), std::string::npos)
        << e.what();
  }
}

TEST(ModelIo, LoadsShardedCheckpoint) {
  Model m = model_load(fixture("llama"));
  std::string dir = testing::TempDir() + "topk_sharded_" + std::to_string(getpid());
  make_dirs(dir);
  save_config(dir, m.cfg);
  std::vector<StWrite> a, b;
  std::string map;
  for (size_t i = 0; i < m.params.size(); i++) {
    const ParamInfo& p = m.params[i];
    (i % 2 ? a : b).push_back({p.name, DType::f32, p.shape, m.host() + p.offset});
    map += std::string(map.empty() ? "" : ",") + "\"" + p.name + "\": \"" +
           (i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") + "\"";
  }
  st_save(dir + "/model-00001-of-00002.safetensors", a);
  st_save(dir + "/model-00002-of-00002.safetensors", b);
  write_file_atomic(dir + "/model.safetensors.index.json",
                    "{\"metadata\": {}, \"weight_map\": {" + map + "}}");
  Model r = model_load(dir);
  EXPECT_EQ(model_host_weights(r), model_host_weights(m));
}

TEST(AttnPolicy, ParsesAndRejects) {
  EXPECT_FALSE(parse_policy("full").is_topk());
  AttnPolicy p = parse_policy("topk:ratio=0.05,share=group");
  EXPECT_TRUE(p.is_topk());
  EXPECT_DOUBLE_EQ(p.sel.ratio, 0.05);
  EXPECT_TRUE(p.sel.share_group);
  EXPECT_EQ(policy_str(p), "topk:ratio=0.05,share=group");
  EXPECT_EQ(parse_policy("topk:k=64,sink=4,window=16").sel.window, 16);
  for (const char* bad : {"topk", "topk:", "topk:k=0", "topk:k=4,ratio=0.1", "topk:ratio=2",
                          "topk:k=-3", "topk:share=group", "topk:q=1", "sparse"})
    EXPECT_THROW(parse_policy(bad), Error) << bad;
}
