// Attention entropy and selection mass on CUDA against the scalar reference: decode steps
// (T = 1, ragged caches, a sequence of one key and one of none), causal prefill rows, group
// sizes 1 to 8, both head dims, bf16 and f32 keys; selections with invalid entries, duplicates
// and group-shared lists; row ranges under a small budget give the same bits as one range.
#include <memory>

#include "cuda_test_util.h"

using namespace topk;
using namespace topk::cudatest;

namespace {

Layout batched(int64_t B, int64_t T, int64_t S) {
  Layout l;
  l.B = B;
  l.T = T;
  l.S = S;
  return l;
}

// Random lists [B, T, Hsel, K] over each row's visible keys and past them: invalid entries,
// keys the row does not see, duplicates.
Pair random_lists(const Layout& l, int Hsel, int64_t K, uint64_t seed) {
  Pair idx(DType::i32, {l.B, l.T, Hsel, K});
  Rng rng(seed);
  int32_t* x = idx.host.ptr<int32_t>();
  for (int64_t i = 0; i < idx.host.numel(); i++) {
    int32_t j = int32_t(rng.below(uint64_t(l.S + 10))) - 5;
    if (i % 7 == 3) j = x[i - 1];  // a duplicate of the entry before
    x[i] = j;
  }
  idx.upload();
  return idx;
}

void check_metrics(const Layout& l, int Hq, int Hkv, int D, DType kvdt, bool causal, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << l.B << "x" << l.T << " S=" << l.S << " Hq=" << Hq << " Hkv=" << Hkv
                                  << " D=" << D << " " << dtype_name(kvdt) << (causal ? " causal" : ""));
  Qkv in(l, Hq, Hkv, D, DType::f32, kvdt, seed);
  const AttnOpts co = opts(causal, Backend::automatic), ro = opts(causal, Backend::ref);
  Pair e(DType::f32, {l.B, l.T, Hq}), n(DType::f32, {l.B, l.T, Hq});
  poison(e.dev);
  poison(n.dev);
  attention_entropy(in.q.dev, in.k.dev, l.seqs(), co, e.dev, n.dev);
  attention_entropy(in.q.host, in.k.host, l.seqs(), ro, e.host, n.host);
  const std::vector<char> mask = l.owned(Hq);
  expect_close(e.download(), host_vals(e.host), 1e-4, 1e-4, "entropy", mask);
  expect_close(n.download(), host_vals(n.host), 1e-4, 1e-4, "normalized", mask);
  for (int Hsel : {Hq, Hkv}) {
    SCOPED_TRACE(testing::Message() << "Hsel=" << Hsel);
    Pair idx = random_lists(l, Hsel, 37, seed + Hsel);
    Pair m(DType::f32, {l.B, l.T, Hq});
    poison(m.dev);
    selection_mass(in.q.dev, in.k.dev, idx.dev, l.seqs(), co, m.dev);
    selection_mass(in.q.host, in.k.host, idx.host, l.seqs(), ro, m.host);
    expect_close(m.download(), host_vals(m.host), 1e-5, 1e-4, "mass", mask);
  }
}

}  // namespace

TEST(CudaMetrics, DecodeSteps) {
  NEED_GPU();
  uint64_t seed = 4000;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv] : {std::pair{4, 4}, {8, 2}, {16, 2}})
      for (DType kv : {DType::bf16, DType::f32}) {
        Layout l = batched(4, 1, 700);
        l.seqlens_k = {700, 129, 1, 0};
        check_metrics(l, Hq, Hkv, D, kv, true, seed++);
        if (testing::Test::HasFailure()) return;
      }
}

TEST(CudaMetrics, PrefillRowsAndLayouts) {
  NEED_GPU();
  uint64_t seed = 4100;
  Layout rag = batched(3, 20, 300);
  rag.seqlens_q = {20, 3, 0};
  rag.seqlens_k = {300, 50, 7};
  check_metrics(rag, 8, 2, 64, DType::bf16, true, seed++);
  check_metrics(rag, 8, 2, 128, DType::f32, false, seed++);
  Layout pk = batched(1, 60, 260);
  pk.cu_q = {0, 20, 20, 60};
  pk.cu_k = {0, 100, 130, 260};
  check_metrics(pk, 4, 1, 64, DType::bf16, true, seed++);
}

// Row ranges: a budget of a few score rows splits the call; the sums per row do not change.
TEST(CudaMetrics, RowRangesGiveTheSameBits) {
  NEED_GPU();
  Layout l = batched(3, 9, 1000);
  l.seqlens_k = {1000, 500, 3};
  Qkv in(l, 8, 2, 64, DType::f32, DType::bf16, 4200);
  Pair idx = random_lists(l, 8, 50, 4201);
  const AttnOpts co = opts(true, Backend::automatic);
  std::vector<unsigned char> ref_e, ref_m;
  for (const char* budget : {"", "100000"}) {
    std::unique_ptr<ScopedEnv> env;
    if (*budget) env = std::make_unique<ScopedEnv>("TOPK_CUDA_WORKSPACE_BUDGET", budget);
    Pair e(DType::f32, {l.B, l.T, 8}), m(DType::f32, {l.B, l.T, 8});
    poison(e.dev);
    poison(m.dev);
    attention_entropy(in.q.dev, in.k.dev, l.seqs(), co, e.dev, {});
    selection_mass(in.q.dev, in.k.dev, idx.dev, l.seqs(), co, m.dev);
    if (!*budget) {
      ref_e = e.bytes();
      ref_m = m.bytes();
    } else {
      EXPECT_TRUE(ref_e == e.bytes()) << "entropy differs with row ranges";
      EXPECT_TRUE(ref_m == m.bytes()) << "mass differs with row ranges";
    }
  }
}
