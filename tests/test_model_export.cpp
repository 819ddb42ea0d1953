// Checkpoints topk writes: reloaded by topk they give the same logits; with TOPK_EXPORT_DIR set
// the folders (plus golden.safetensors with topk's logits) are kept there for
// tools/hf_check_export.py, which loads them in transformers and compares.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "core/rng.h"
#include "core/safetensors.h"
#include "model/forward.h"

using namespace topk;

static void randomize(Model& m, uint64_t seed) {
  Rng rng(seed);
  for (const auto& p : m.params) {
    bool norm = p.name.find("norm.weight") != std::string::npos;
    for (int64_t i = 0; i < p.numel; i++)
      m.host()[p.offset + size_t(i)] = norm ? 1.0f + 0.2f * rng.normal() : 0.15f * rng.normal();
  }
}

static ModelConfig tiny(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.hidden = 48, c.inter = 96, c.layers = 2, c.heads = 6, c.kv_heads = 2, c.head_dim = 8;
  c.vocab = 259 + 5, c.max_pos = 256;
  c.bos = 256, c.eos = 257, c.pad = 258, c.eos_ids = {257};
  c.tokenizer.present = true;
  return c;
}

TEST(ModelExport, WrittenCheckpointsReloadWithSameLogits) {
  const char* env = std::getenv("TOPK_EXPORT_DIR");
  std::string root = env ? env : testing::TempDir() + "topk_export_" + std::to_string(getpid());
  std::vector<std::pair<std::string, ModelConfig>> cases;
  ModelConfig l = tiny(Arch::llama);  // llama3 rope scaling and o/q/k/v biases
  l.rope.theta = 50000, l.rope.llama3 = true, l.rope.factor = 8, l.rope.original_max_pos = 16;
  l.attention_bias = true, l.rms_eps = 1e-5;
  cases.push_back({"llama_bias_f32", l});
  ModelConfig q2 = tiny(Arch::qwen2);
  q2.head_dim = 8, q2.hidden = 48, q2.tie_embeddings = true;
  cases.push_back({"qwen2_tied_f32", q2});
  ModelConfig q3 = tiny(Arch::qwen3);
  q3.dtype = "bfloat16", q3.rope.theta = 1e6, q3.head_dim = 16;  // q_dim 96 != hidden 48
  cases.push_back({"qwen3_bf16", q3});
  std::vector<std::vector<int>> seqs = {{256, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100,
                                         33, 10, 0, 255, 40, 41, 42, 43, 44}};
  for (auto& [name, cfg] : cases) {
    std::string dir = root + "/" + name;
    Model m = model_create(cfg);
    randomize(m, 7);
    model_save(dir, m);
    Model r = model_load(dir);
    Batch b = make_batch(seqs);
    Acts a;
    model_forward(r, b, AttnPolicy{}, a);
    if (cfg.dtype == "float32") {
      Acts a0;
      model_forward(m, b, AttnPolicy{}, a0);
      EXPECT_EQ(logits_host(a0), logits_host(a)) << name;
    }
    int T = int(seqs[0].size());
    std::vector<int32_t> ids(seqs[0].begin(), seqs[0].end());
    st_save(dir + "/golden.safetensors",
            {{"input_ids", DType::i32, {1, T}, ids.data()},
             {"logits", DType::f32, {1, T, cfg.vocab}, logits_host(a).data()}});
    EXPECT_EQ(load_config(dir).tokenizer.present, true);
  }
}
