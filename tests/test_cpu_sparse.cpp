// CPU sparse attention (forward, backward) and fused exact top-k attention against the
// reference.
#include <omp.h>

#include "cpu_test_util.h"

namespace topk::test {
namespace {

std::vector<Case> sparse_cases() {
  std::vector<Case> cs;
  cs.push_back({"decode_g4", 1, 1, 200, 8, 2, 64});
  cs.push_back({"mha_d128", 2, 3, 100, 4, 4, 128});
  cs.push_back({"g2_d48", 1, 5, 65, 4, 2, 48, true});
  cs.push_back({"h1_d20", 1, 4, 64, 1, 1, 20});
  Case bf{"bf16", 1, 3, 90, 4, 2, 80, false, DType::bf16, DType::bf16};
  cs.push_back(bf);
  Case rag{"ragged", 3, 2, 100, 4, 2, 64};
  rag.seqlens_k = {0, 37, 100};
  cs.push_back(rag);
  Case pk{"packed", 1, 10, 130, 4, 1, 64};
  pk.cu_q = {0, 3, 3, 10};
  pk.cu_k = {0, 40, 50, 130};
  cs.push_back(pk);
  return cs;
}

// Random index lists: out-of-range and negative entries, duplicates, and row 0 all invalid.
Buffer random_indices(const Case& c, int hsel, int64_t K, Rng& rng) {
  Buffer idx(DType::i32, {c.B, c.T, hsel, K});
  int32_t* x = idx.ptr<int32_t>();
  for (int64_t i = 0; i < idx.numel(); i++) {
    uint64_t r = rng.below(10);
    x[i] = r == 0 ? -1 : r == 1 ? int32_t(c.S + rng.below(3)) : int32_t(rng.below(c.S));
  }
  for (int64_t i = 0; i < K; i++) x[i] = i % 2 ? -1 : c.S;
  if (K > 3) x[K + 1] = x[K + 2];  // a duplicate in row 1
  return idx;
}

class CpuSparse : public IsaTest {};

TEST_P(CpuSparse, ForwardAndBackwardMatchRef) {
  Rng rng(21);
  for (const Case& c : sparse_cases()) {
    for (int hsel : {c.Hq, c.Hkv}) {
      for (int64_t K : {1, 16, 65}) {
        SCOPED_TRACE(case_name(c) + " Hsel " + std::to_string(hsel) + " K " + std::to_string(K));
        auto [q, k, v] = random_qkv(c, rng, 2.0f);
        Buffer idx = random_indices(c, hsel, K, rng);
        Buffer o1(c.odt, {c.B, c.T, c.Hq, c.D}), o2(c.odt, {c.B, c.T, c.Hq, c.D});
        Buffer l1(DType::f32, {c.B, c.T, c.Hq}), l2(DType::f32, {c.B, c.T, c.Hq});
        sparse_attention_forward(q, k, v, idx, c.seqs(), c.opts(Backend::ref), o1, l1);
        sparse_attention_forward(q, k, v, idx, c.seqs(), c.opts(Backend::cpu), o2, l2);
        expect_close(to_vec(o2), to_vec(o1), rtol_for(c.odt), atol_for(c.odt), "o");
        expect_close(to_vec(l2), to_vec(l1), 2e-5, 2e-6, "lse");

        Buffer dout = randn(c.dt, {c.B, c.T, c.Hq, c.D}, rng);
        Buffer dq1(DType::f32, {c.B, c.T, c.Hq, c.D}), dk1(DType::f32, {c.B, c.S, c.Hkv, c.D}),
            dv1(DType::f32, {c.B, c.S, c.Hkv, c.D});
        Buffer dq2(DType::f32, {c.B, c.T, c.Hq, c.D}), dk2(DType::f32, {c.B, c.S, c.Hkv, c.D}),
            dv2(DType::f32, {c.B, c.S, c.Hkv, c.D});
        sparse_attention_backward(q, k, v, idx, o1, l1, dout, c.seqs(), c.opts(Backend::ref), dq1, dk1, dv1);
        sparse_attention_backward(q, k, v, idx, o1, l1, dout, c.seqs(), c.opts(Backend::cpu), dq2, dk2, dv2);
        expect_close(to_vec(dq2), to_vec(dq1), 1e-4, 1e-5, "dq");
        expect_close(to_vec(dk2), to_vec(dk1), 1e-4, 1e-5, "dk");
        expect_close(to_vec(dv2), to_vec(dv1), 1e-4, 1e-5, "dv");
      }
    }
  }
}

std::vector<Case> topk_cases() {
  std::vector<Case> cs;
  for (int S : {1, 255, 256, 257, 1000}) cs.push_back({"decode_g4", 1, 1, S, 8, 2, 128});
  cs.push_back({"decode_g1_d48", 2, 1, 300, 4, 4, 48});
  cs.push_back({"decode_g96", 1, 1, 100, 96, 1, 64});  // more heads than one attend call takes
  cs.push_back({"prefill_g4", 1, 70, 70, 8, 2, 64, true});  // two query blocks, per-head items
  cs.push_back({"prefill_h1_d20", 1, 65, 65, 1, 1, 20, true});
  Case bf{"bf16", 1, 3, 300, 4, 2, 80, true, DType::bf16, DType::bf16};
  cs.push_back(bf);
  Case bf40{"bf16_decode_d40", 1, 1, 1500, 8, 2, 40, false, DType::bf16, DType::f32};
  cs.push_back(bf40);
  // The widest rows the AVX-512 gather keeps in registers (D = 256), and one with a tail.
  cs.push_back({"decode_d256", 1, 1, 200, 4, 2, 256});
  Case bf200{"bf16_decode_d200", 1, 1, 200, 4, 1, 200, false, DType::bf16, DType::f32};
  cs.push_back(bf200);
  add_layout_cases(cs, 90, 40);
  return cs;
}

std::vector<SelectOpts> topk_budgets() {
  std::vector<SelectOpts> v(6);
  v[0].k = 16;
  v[1].k = 64;
  v[1].share_group = true;
  v[2].ratio = 0.1;
  v[2].min_k = 4;
  v[3].k = 8;
  v[3].sink = 2;
  v[3].window = 3;
  v[4].ratio = 0.05;
  v[4].share_group = true;
  v[4].sink = 1;
  v[5].k = 100000;  // every visible key
  return v;
}

class CpuTopk : public IsaTest {};

// Fused top-k attention on the CPU against the reference: the same indices, and o and lse
// within the dtype's tolerance. The CPU outputs are left in o and lse.
void expect_topk_matches_ref(const Case& c, const Buffer& q, const Buffer& k, const Buffer& v,
                             const SelectOpts& sel, Buffer& o, Buffer& lse) {
  const int hsel = sel.share_group ? c.Hkv : c.Hq;
  const int64_t K = select_capacity(sel, c.S);
  Buffer o_ref(c.odt, {c.B, c.T, c.Hq, c.D}), lse_ref(DType::f32, {c.B, c.T, c.Hq});
  Buffer i_ref(DType::i32, {c.B, c.T, hsel, K}), idx(DType::i32, {c.B, c.T, hsel, K});
  topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::ref), sel, o_ref, lse_ref, i_ref);
  topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), sel, o, lse, idx);
  EXPECT_EQ(ivec(idx), ivec(i_ref));
  expect_close(to_vec(o), to_vec(o_ref), rtol_for(c.odt), atol_for(c.odt), "o");
  expect_close(to_vec(lse), to_vec(lse_ref), 2e-5, 2e-6, "lse");
}

// Fused top-k attention: the same indices as the reference composition, and the same outputs.
TEST_P(CpuTopk, FusedMatchesRef) {
  Rng rng(31);
  for (const Case& c : topk_cases()) {
    for (const SelectOpts& sel : topk_budgets()) {
      SCOPED_TRACE(case_name(c) + " k " + std::to_string(sel.k) + " ratio " +
                   std::to_string(sel.ratio) + (sel.share_group ? " shared" : ""));
      auto [q, k, v] = random_qkv(c, rng, 2.0f);
      Buffer o(c.odt, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
      expect_topk_matches_ref(c, q, k, v, sel, o, lse);
      if (sel.k >= c.S) {  // W >= visible keys: exactly full attention
        Buffer of(c.odt, {c.B, c.T, c.Hq, c.D}), lf(DType::f32, {c.B, c.T, c.Hq});
        attention_forward(q, k, v, c.seqs(), c.opts(Backend::ref), of, lf);
        expect_close(to_vec(o), to_vec(of), rtol_for(c.odt), atol_for(c.odt), "o vs full");
        expect_close(to_vec(lse), to_vec(lf), 2e-5, 2e-6, "lse vs full");
      }
    }
  }
}

// Decode over more than 16 MiB of K writes its score rows with streaming stores and selects
// from rows of 33024 keys (the sampled threshold of the AVX-512 copy).
TEST_P(CpuTopk, LongDecodeMatchesRef) {
  Rng rng(33);
  Case c{"long_decode", 1, 1, 33024, 4, 1, 128};
  auto [q, k, v] = random_qkv(c, rng, 2.0f);
  std::vector<SelectOpts> sels(4);
  sels[0].k = 64;
  sels[1].ratio = 0.02;
  sels[2].k = 40;
  sels[2].sink = 4;
  sels[2].window = 16;
  sels[3].k = 64;
  sels[3].share_group = true;
  for (const SelectOpts& sel : sels) {
    SCOPED_TRACE("k " + std::to_string(sel.k) + (sel.share_group ? " shared" : ""));
    Buffer o(c.odt, {c.B, c.T, c.Hq, c.D}), lse(DType::f32, {c.B, c.T, c.Hq});
    expect_topk_matches_ref(c, q, k, v, sel, o, lse);
  }
}

// Decode splits the keys into chunks over the threads: any thread count must give bit-identical
// results, equal to the reference.
TEST_P(CpuTopk, DecodeSameForAnyThreadCount) {
  Rng rng(32);
  Case c{"decode_hkv8", 2, 1, 700, 16, 8, 64};
  int saved = omp_get_max_threads();
  for (bool share : {false, true}) {
    SelectOpts sel;
    sel.k = 50;
    sel.share_group = share;
    int hsel = share ? c.Hkv : c.Hq;
    int64_t K = select_capacity(sel, c.S);
    auto [q, k, v] = random_qkv(c, rng, 2.0f);
    std::vector<std::vector<float>> outs;
    std::vector<std::vector<int32_t>> idxs;
    for (int threads : {1, 3, 64}) {
      omp_set_num_threads(threads);
      Buffer o(c.odt, {c.B, c.T, c.Hq, c.D}), l(DType::f32, {c.B, c.T, c.Hq});
      Buffer idx(DType::i32, {c.B, c.T, hsel, K});
      topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::cpu), sel, o, l, idx);
      outs.push_back(to_vec(o));
      idxs.push_back(ivec(idx));
    }
    omp_set_num_threads(saved);
    for (int i = 1; i < 3; i++) {
      EXPECT_EQ(outs[0], outs[i]);
      EXPECT_EQ(idxs[0], idxs[i]);
    }
    Buffer o(c.odt, {c.B, c.T, c.Hq, c.D}), l(DType::f32, {c.B, c.T, c.Hq});
    Buffer idx(DType::i32, {c.B, c.T, hsel, K});
    topk_attention_forward(q, k, v, c.seqs(), c.opts(Backend::ref), sel, o, l, idx);
    EXPECT_EQ(idxs[0], ivec(idx));
    expect_close(outs[0], to_vec(o), 2e-5, 2e-6, "o");
  }
}

TOPK_PER_ISA(CpuSparse);
TOPK_PER_ISA(CpuTopk);

}  // namespace
}  // namespace topk::test
