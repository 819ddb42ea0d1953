// Gradients: the reference backward against central differences of the reference forward
// (loss = sum(o * r) in double), then the CPU backward against the reference backward, for
// full and sparse attention.
#include "cpu_test_util.h"

namespace topk::test {
namespace {

struct Grads {
  Buffer dq, dk, dv;
};

// Forward (ref) of full attention, or sparse attention when idx is given.
void fwd(const Case& c, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* idx,
         const Buffer& o, const Buffer& lse, Backend b) {
  if (idx) sparse_attention_forward(q, k, v, *idx, c.seqs(), c.opts(b), o, lse);
  else attention_forward(q, k, v, c.seqs(), c.opts(b), o, lse);
}

Grads bwd(const Case& c, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* idx,
          const Buffer& o, const Buffer& lse, const Buffer& dout, Backend b) {
  Grads g{Buffer(DType::f32, {c.B, c.T, c.Hq, c.D}), Buffer(DType::f32, {c.B, c.S, c.Hkv, c.D}),
          Buffer(DType::f32, {c.B, c.S, c.Hkv, c.D})};
  if (idx)
    sparse_attention_backward(q, k, v, *idx, o, lse, dout, c.seqs(), c.opts(b), g.dq, g.dk, g.dv);
  else
    attention_backward(q, k, v, o, lse, dout, c.seqs(), c.opts(b), g.dq, g.dk, g.dv);
  return g;
}

double loss(const Case& c, const Buffer& q, const Buffer& k, const Buffer& v, const Buffer* idx,
            const Buffer& r) {
  Buffer o(DType::f32, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
  fwd(c, q, k, v, idx, o, lse, Backend::ref);
  double s = 0;
  for (int64_t i = 0; i < o.numel(); i++) s += double(o.ptr<float>()[i]) * r.ptr<float>()[i];
  return s;
}

void check_numeric(const Case& c, const Buffer* idx, Rng& rng) {
  Buffer q = randn(DType::f32, {c.B, c.T, c.Hq, c.D}, rng);
  Buffer k = randn(DType::f32, {c.B, c.S, c.Hkv, c.D}, rng);
  Buffer v = randn(DType::f32, {c.B, c.S, c.Hkv, c.D}, rng);
  Buffer r = randn(DType::f32, {c.B, c.T, c.Hq, c.D}, rng);
  Buffer o(DType::f32, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
  fwd(c, q, k, v, idx, o, lse, Backend::ref);
  Grads g = bwd(c, q, k, v, idx, o, lse, r, Backend::ref);
  const float eps = 1e-2f;
  std::pair<const Buffer*, const Buffer*> pairs[] = {{&q, &g.dq}, {&k, &g.dk}, {&v, &g.dv}};
  for (auto [x, dx] : pairs) {
    float* xp = x->ptr<float>();
    for (int64_t i = 0; i < x->numel(); i++) {
      float x0 = xp[i];
      xp[i] = x0 + eps;
      double up = loss(c, q, k, v, idx, r);
      float hi = xp[i];
      xp[i] = x0 - eps;
      double dn = loss(c, q, k, v, idx, r);
      float lo = xp[i];
      xp[i] = x0;
      double num = (up - dn) / (double(hi) - double(lo));
      double ana = dx->ptr<float>()[i];
      ASSERT_NEAR(ana, num, 2e-3 * (1 + std::fabs(num))) << "element " << i;
    }
  }
}

TEST(CpuGrad, RefBackwardMatchesCentralDifferences) {
  Rng rng(41);
  Case a{"full", 1, 3, 6, 2, 1, 4};
  Case b{"full_causal", 2, 3, 5, 4, 2, 3, true};
  b.seqlens_k = {5, 3};
  for (const Case& c : {a, b}) {
    SCOPED_TRACE(case_name(c));
    check_numeric(c, nullptr, rng);
  }
  Case s{"sparse", 1, 3, 6, 4, 2, 4};
  for (int hsel : {4, 2}) {
    SCOPED_TRACE("sparse Hsel " + std::to_string(hsel));
    Buffer idx(DType::i32, {1, 3, hsel, 4});
    int32_t* x = idx.ptr<int32_t>();
    for (int64_t i = 0; i < idx.numel(); i++) x[i] = int32_t(rng.below(8)) - 1;  // -1 .. 6
    x[1] = x[0];  // a duplicate: counts twice
    for (int i = 4; i < 8; i++) x[i] = -1;  // an all-invalid row
    check_numeric(s, &idx, rng);
  }
}

std::vector<Case> grad_cases() {
  std::vector<Case> cs;
  for (int S : {63, 64, 65}) cs.push_back({"decode", 1, 1, S, 8, 2, 64});
  cs.push_back({"prefill_g2", 1, 70, 70, 4, 2, 48, true});
  cs.push_back({"prefill_mha_d128", 2, 17, 40, 2, 2, 128, false});
  cs.push_back({"h1_d20", 1, 65, 65, 1, 1, 20, true});
  Case bf{"bf16", 1, 5, 70, 4, 1, 64, true, DType::bf16, DType::bf16};
  cs.push_back(bf);
  add_layout_cases(cs);
  return cs;
}

class CpuBackward : public IsaTest {};

TEST_P(CpuBackward, FullMatchesRef) {
  Rng rng(42);
  for (const Case& c : grad_cases()) {
    SCOPED_TRACE(case_name(c));
    auto [q, k, v] = random_qkv(c, rng, 2.0f);
    Buffer dout = randn(c.dt, {c.B, c.T, c.Hq, c.D}, rng);
    Buffer o(c.odt, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
    fwd(c, q, k, v, nullptr, o, lse, Backend::ref);
    Grads g1 = bwd(c, q, k, v, nullptr, o, lse, dout, Backend::ref);
    Grads g2 = bwd(c, q, k, v, nullptr, o, lse, dout, Backend::cpu);
    expect_close(to_vec(g2.dq), to_vec(g1.dq), 1e-4, 1e-5, "dq");
    expect_close(to_vec(g2.dk), to_vec(g1.dk), 1e-4, 1e-5, "dk");
    expect_close(to_vec(g2.dv), to_vec(g1.dv), 1e-4, 1e-5, "dv");
  }
}

TOPK_PER_ISA(CpuBackward);

}  // namespace
}  // namespace topk::test
