// CPU full attention forward, scores and metrics against the reference, plus determinism and
// isolation of packed sequences.
#include <cstring>

#include "cpu_test_util.h"

namespace topk::test {
namespace {

// Block sizes of the CPU paths: keys per block 64, query rows per tile 64, key chunks
// 256 / 512 / 1024 / 2048 (splitting of long decode rows). Sizes sit at n-1, n, n+1.
std::vector<Case> forward_cases() {
  std::vector<Case> cs;
  for (int S : {1, 63, 64, 65, 255, 257}) cs.push_back({"decode_g4", 1, 1, S, 8, 2, 64});
  for (int S : {1023, 1024, 1025, 3000}) cs.push_back({"decode_split", 1, 1, S, 4, 1, 128});
  cs.push_back({"decode_mha", 2, 1, 200, 4, 4, 128});
  cs.push_back({"decode_g2_d48", 1, 2, 129, 4, 2, 48, true});
  for (int T : {63, 64, 65}) cs.push_back({"prefill_h1_tail", 1, T, T, 1, 1, 20, true});
  cs.push_back({"prefill_g2", 2, 70, 70, 4, 2, 48, true});
  cs.push_back({"prefill_noncausal", 1, 17, 90, 4, 1, 80, false});
  cs.push_back({"prefill_many_heads", 1, 3, 70, 128, 2, 64, true});  // per-KV-head tiles
  Case bf{"bf16", 1, 3, 130, 4, 2, 80, true, DType::bf16, DType::bf16};
  cs.push_back(bf);
  Case bf32{"bf16_in_f32_out", 2, 1, 300, 8, 2, 64, false, DType::bf16, DType::f32};
  cs.push_back(bf32);
  Case f16{"f16", 1, 2, 90, 4, 2, 64, true, DType::f16, DType::f32};
  cs.push_back(f16);
  Case bf40{"bf16_d40", 1, 1, 203, 8, 2, 40, false, DType::bf16, DType::f32};  // masked bf16 tails
  cs.push_back(bf40);
  add_layout_cases(cs);
  Case rag2 = cs[cs.size() - 3];  // the ragged case, without the causal mask
  rag2.name = "ragged_noncausal";
  rag2.causal = false;
  cs.push_back(rag2);
  return cs;
}

class CpuAttention : public IsaTest {};

TEST_P(CpuAttention, ForwardMatchesRef) {
  Rng rng(1);
  for (const Case& c : forward_cases()) {
    SCOPED_TRACE(case_name(c));
    auto [q, k, v] = random_qkv(c, rng, 2.0f);
    Buffer o1(c.odt, {c.B, c.T, c.Hq, c.D}), o2(c.odt, {c.B, c.T, c.Hq, c.D});
    Buffer l1(DType::f32, {c.B, c.T, c.Hq}), l2(DType::f32, {c.B, c.T, c.Hq});
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::ref), o1, l1);
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o2, l2);
    expect_close(to_vec(o2), to_vec(o1), rtol_for(c.odt), atol_for(c.odt), "o");
    expect_close(to_vec(l2), to_vec(l1), 2e-5, 2e-6, "lse");
  }
}

TEST_P(CpuAttention, ScoresMatchRef) {
  Rng rng(2);
  for (const Case& c : forward_cases()) {
    SCOPED_TRACE(case_name(c));
    Buffer q = randn(c.dt, {c.B, c.T, c.Hq, c.D}, rng);
    Buffer k = randn(c.dt, {c.B, c.S, c.Hkv, c.D}, rng);
    Buffer s1(DType::f32, {c.B, c.T, c.Hq, c.S}), s2(DType::f32, {c.B, c.T, c.Hq, c.S});
    attention_scores(q, k, c.seqs(), c.opts(Backend::ref), s1);
    attention_scores(q, k, c.seqs(), c.opts(Backend::cpu), s2);
    expect_close(to_vec(s2), to_vec(s1), 2e-5, 2e-6, "scores");
  }
}

TEST_P(CpuAttention, MetricsMatchRef) {
  Rng rng(3);
  for (const Case& c : forward_cases()) {
    SCOPED_TRACE(case_name(c));
    Buffer q = randn(c.dt, {c.B, c.T, c.Hq, c.D}, rng, 3.0f);
    Buffer k = randn(c.dt, {c.B, c.S, c.Hkv, c.D}, rng);
    Buffer e1(DType::f32, {c.B, c.T, c.Hq}), e2(DType::f32, {c.B, c.T, c.Hq});
    Buffer n1(DType::f32, {c.B, c.T, c.Hq}), n2(DType::f32, {c.B, c.T, c.Hq});
    attention_entropy(q, k, c.seqs(), c.opts(Backend::ref), e1, n1);
    attention_entropy(q, k, c.seqs(), c.opts(Backend::cpu), e2, n2);
    expect_close(to_vec(e2), to_vec(e1), 1e-4, 1e-5, "entropy");
    expect_close(to_vec(n2), to_vec(n1), 1e-4, 1e-5, "normalized entropy");
    // Selection mass over random index lists (invalid entries and duplicates included), per
    // head and per group.
    for (int hsel : {c.Hq, c.Hkv}) {
      int64_t K = 7;
      Buffer idx(DType::i32, {c.B, c.T, hsel, K});
      for (int64_t i = 0; i < idx.numel(); i++)
        idx.ptr<int32_t>()[i] = int32_t(rng.below(c.S + 4)) - 2;
      Buffer m1(DType::f32, {c.B, c.T, c.Hq}), m2(DType::f32, {c.B, c.T, c.Hq});
      selection_mass(q, k, idx, c.seqs(), c.opts(Backend::ref), m1);
      selection_mass(q, k, idx, c.seqs(), c.opts(Backend::cpu), m2);
      expect_close(to_vec(m2), to_vec(m1), 1e-4, 1e-6, "selection mass");
    }
  }
}

TEST_P(CpuAttention, EmptyRowsGiveZeroAndInfLse) {
  // Sequence 0 has no keys; with causal and q_pos = 0 every query of sequence 1 sees t+1.
  Case c{"empty", 2, 2, 8, 2, 1, 64, true};
  c.seqlens_k = {0, 8};
  Rng rng(4);
  auto [q, k, v] = random_qkv(c, rng);
  Buffer o(DType::f32, {c.B, c.T, c.Hq, c.D}), l(DType::f32, {c.B, c.T, c.Hq});
  store_f32(o.view().data, DType::f32, 0, 7.0f);  // must be overwritten with 0
  attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o, l);
  for (int64_t i = 0; i < c.T * c.Hq; i++) EXPECT_TRUE(std::isinf(l.ptr<float>()[i]));
  for (int64_t i = 0; i < c.T * c.Hq * c.D; i++) EXPECT_EQ(o.ptr<float>()[i], 0.0f);
  for (int64_t i = c.T * c.Hq; i < 2 * c.T * c.Hq; i++) EXPECT_TRUE(std::isfinite(l.ptr<float>()[i]));
}

TEST_P(CpuAttention, PackedSequencesDoNotSeeEachOther) {
  Case c{"packed", 1, 12, 300, 4, 2, 64, true};
  c.cu_q = {0, 5, 12};
  c.cu_k = {0, 200, 300};
  for (bool causal : {true, false}) {
    c.causal = causal;
    Rng rng(5);
    Buffer q = randn(c.dt, {1, c.T, c.Hq, c.D}, rng);
    Buffer k = randn(c.dt, {1, c.S, c.Hkv, c.D}, rng);
    Buffer v = randn(c.dt, {1, c.S, c.Hkv, c.D}, rng);
    Buffer o1(DType::f32, {1, c.T, c.Hq, c.D}), o2(DType::f32, {1, c.T, c.Hq, c.D});
    Buffer t1(DType::f32, {1, c.T, c.Hq, c.D}), t2(DType::f32, {1, c.T, c.Hq, c.D});
    Buffer l1(DType::f32, {1, c.T, c.Hq}), l2(DType::f32, {1, c.T, c.Hq});
    SelectOpts sel;
    sel.k = 16;
    Buffer idx(DType::i32, {1, c.T, c.Hq, select_capacity(sel, c.S)});
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o1, l1);
    topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), sel, t1, l1, idx);
    // Perturb sequence 1's keys and values (rows 200..299).
    for (int64_t i = 200 * c.Hkv * c.D; i < c.S * c.Hkv * c.D; i++) {
      k.ptr<float>()[i] += 0.5f;
      v.ptr<float>()[i] -= 0.5f;
    }
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o2, l2);
    topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), sel, t2, l2, idx);
    size_t row = size_t(c.Hq) * c.D;
    for (auto [a, b] : {std::pair{&o1, &o2}, std::pair{&t1, &t2}}) {
      EXPECT_EQ(0, std::memcmp(a->ptr<float>(), b->ptr<float>(), 5 * row * 4)) << "sequence 0 changed";
      EXPECT_NE(0, std::memcmp(a->ptr<float>() + 5 * row, b->ptr<float>() + 5 * row, 7 * row * 4))
          << "sequence 1 did not change";
    }
  }
}

TEST_P(CpuAttention, Deterministic) {
  Rng rng(6);
  // Split decode (flash-decoding combine), prefill, and the fused top-k path.
  for (Case c : {Case{"split", 1, 1, 5000, 8, 2, 128}, Case{"prefill", 1, 80, 80, 4, 2, 64, true}}) {
    SCOPED_TRACE(case_name(c));
    auto [q, k, v] = random_qkv(c, rng);
    Buffer o1(DType::f32, {c.B, c.T, c.Hq, c.D}), o2(DType::f32, {c.B, c.T, c.Hq, c.D});
    Buffer l1(DType::f32, {c.B, c.T, c.Hq}), l2(DType::f32, {c.B, c.T, c.Hq});
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o1, l1);
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o2, l2);
    EXPECT_TRUE(bit_equal(o1, o2));
    EXPECT_TRUE(bit_equal(l1, l2));
    SelectOpts sel;
    sel.k = 37;
    int64_t K = select_capacity(sel, c.S);
    Buffer i1(DType::i32, {c.B, c.T, c.Hq, K}), i2(DType::i32, {c.B, c.T, c.Hq, K});
    topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), sel, o1, l1, i1);
    topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), sel, o2, l2, i2);
    EXPECT_TRUE(bit_equal(o1, o2));
    EXPECT_TRUE(bit_equal(i1, i2));
    Buffer dout = randn(DType::f32, {c.B, c.T, c.Hq, c.D}, rng);
    Buffer dq1(DType::f32, {c.B, c.T, c.Hq, c.D}), dk1(DType::f32, {c.B, c.S, c.Hkv, c.D}),
        dv1(DType::f32, {c.B, c.S, c.Hkv, c.D});
    Buffer dq2(DType::f32, {c.B, c.T, c.Hq, c.D}), dk2(DType::f32, {c.B, c.S, c.Hkv, c.D}),
        dv2(DType::f32, {c.B, c.S, c.Hkv, c.D});
    attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), o1, l1);
    attention_backward(q, k, v, o1, l1, dout, c.seqs(), c.opts(Backend::cpu), dq1, dk1, dv1);
    attention_backward(q, k, v, o1, l1, dout, c.seqs(), c.opts(Backend::cpu), dq2, dk2, dv2);
    EXPECT_TRUE(bit_equal(dq1, dq2) && bit_equal(dk1, dk2) && bit_equal(dv1, dv2));
  }
}

TOPK_PER_ISA(CpuAttention);

}  // namespace
}  // namespace topk::test
