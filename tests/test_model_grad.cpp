// The whole-model backward against central finite differences of the loss, for every
// architecture's layers (biases, q/k norms, tied head), full and top-k attention, packed
// sequences and a loss mask.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.h"
#include "model/forward.h"

using namespace topk;

// The loss, and whether the top-k selections equal `ref`'s (a perturbation that flips a
// selection crosses a discontinuity, where finite differences mean nothing).
static std::vector<int32_t> idx_of(const LayerActs& a) {
  std::vector<int32_t> h(size_t(a.idx.numel()));
  if (!h.empty()) copy(make_view(h.data(), DType::i32, {a.idx.numel()}), a.idx);
  return h;
}

static double loss_of(const Model& m, const Batch& b, const AttnPolicy& pol, const Acts* ref,
                      bool* same_sel) {
  Acts a;
  model_forward(m, b, pol, a);
  if (ref)
    for (size_t l = 0; l < a.L.size(); l++) *same_sel &= idx_of(a.L[l]) == idx_of(ref->L[l]);
  return model_loss(m, b, a, 0) / loss_count(b);
}

struct GradCase {
  const char* name;
  Arch arch;
  bool tie, bias;
  const char* policy;
};

class ModelGrad : public testing::TestWithParam<GradCase> {};

TEST_P(ModelGrad, MatchesFiniteDifferences) {
  GradCase gc = GetParam();
  ModelConfig c;
  c.arch = gc.arch;
  c.hidden = 16, c.inter = 24, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 4;
  c.vocab = 23, c.tie_embeddings = gc.tie, c.attention_bias = gc.bias, c.rms_eps = 1e-5;
  c.rope.llama3 = gc.arch == Arch::llama, c.rope.factor = 4, c.rope.original_max_pos = 4;
  Model m = model_create(c);
  Rng rng(11);
  for (const auto& p : m.params) {
    bool norm = p.name.find("norm.weight") != std::string::npos;
    for (int64_t i = 0; i < p.numel; i++)
      m.host()[p.offset + size_t(i)] = norm ? 1.0f + 0.3f * rng.normal() : 0.4f * rng.normal();
  }
  // Two packed sequences; the loss counts only from position 2 of the second one.
  std::vector<std::vector<int>> seqs = {{1, 5, 7, 2, 9, 3, 3}, {4, 8, 0, 22, 13, 6, 11, 17, 1}};
  Batch b = make_batch(seqs, {0, 2});
  AttnPolicy pol = parse_policy(gc.policy);
  Acts a;
  model_forward(m, b, pol, a);
  model_loss(m, b, a, float(1.0 / loss_count(b)));
  Buffer gbuf(DType::f32, {m.numel});
  model_backward(m, b, pol, a, gbuf);
  const float* grad = gbuf.ptr<float>();

  int checked = 0, flipped = 0;
  for (const auto& p : m.params) {
    for (int s = 0; s < 3; s++) {
      size_t i = p.offset + size_t(rng.below(uint64_t(p.numel)));
      if (p.name == "model.embed_tokens.weight" && !gc.tie) {  // pick a row that is used
        int tok = seqs[1][size_t(s)];
        i = p.offset + size_t(tok) * c.hidden + rng.below(uint64_t(c.hidden));
      }
      float* w = m.host();
      const float eps = 2e-3f, w0 = w[i];
      bool same = true;
      w[i] = w0 + eps;
      double lp = loss_of(m, b, pol, &a, &same);
      w[i] = w0 - eps;
      double lm = loss_of(m, b, pol, &a, &same);
      w[i] = w0;
      if (!same) {
        flipped++;
        continue;
      }
      double num = (lp - lm) / (2.0 * eps), ana = grad[i];
      bool ok = std::abs(num - ana) <= 2e-3 + 2e-2 * std::abs(num);
      EXPECT_TRUE(ok) << gc.name << " " << p.name << "[" << i - p.offset << "]: finite difference "
                      << num << ", backward " << ana;
      checked++;
    }
  }
  EXPECT_GE(checked, 3 * 10);
  EXPECT_LE(flipped, checked / 4) << "too many perturbations changed the top-k selection";
  // The gradient is not trivially zero.
  double norm = 0;
  for (int64_t i = 0; i < m.numel; i++) norm += double(grad[i]) * grad[i];
  EXPECT_GT(norm, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Archs, ModelGrad,
    testing::Values(GradCase{"llama", Arch::llama, false, false, "full"},
                    GradCase{"llama_bias_topk", Arch::llama, false, true, "topk:k=3"},
                    GradCase{"qwen2_tied", Arch::qwen2, true, false, "full"},
                    GradCase{"qwen3_topk_group", Arch::qwen3, true, false,
                             "topk:ratio=0.5,share=group"},
                    GradCase{"qwen3_bias", Arch::qwen3, false, true, "full"}),
    [](const testing::TestParamInfo<GradCase>& i) { return std::string(i.param.name); });
