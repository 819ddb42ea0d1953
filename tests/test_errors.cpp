// Bad arguments raise topk::Error with a message that names the op and the problem.
#include <gtest/gtest.h>

#include "sem_util.h"

using namespace topk;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Errors, NameTheOpAndTheProblem) {
  Buffer q(DType::f32, {1, 2, 6, 8}), k(DType::f32, {1, 5, 4, 8}), v(DType::f32, {1, 5, 4, 8});
  Buffer o(DType::f32, {1, 2, 6, 8}), lse(DType::f32, {1, 2, 6});
  std::string m = error_of([&] { attention_forward(q, k, v, {}, {}, o, lse); });
  EXPECT_NE(m.find("attention_forward"), std::string::npos) << m;
  EXPECT_NE(m.find("multiple"), std::string::npos) << m;

  Buffer k2(DType::f32, {1, 5, 2, 16});
  m = error_of([&] { attention_forward(q, k2, k2, {}, {}, o, lse); });
  EXPECT_NE(m.find("k has size 16 in dim 3"), std::string::npos) << m;

  Buffer k3(DType::f32, {1, 5, 2, 8}), bad_lse(DType::bf16, {1, 2, 6});
  m = error_of([&] { attention_forward(q, k3, k3, {}, {}, o, bad_lse); });
  EXPECT_NE(m.find("lse must be f32"), std::string::npos) << m;

  int32_t lens[2] = {5, 6};
  m = error_of([&] { attention_forward(q, k3, k3, Seqs{.seqlens_k = lens}, {}, o, lse); });
  EXPECT_NE(m.find("seqlens_k has 2 entries"), std::string::npos) << m;
  int32_t long_len[1] = {6};
  m = error_of([&] { attention_forward(q, k3, k3, Seqs{.seqlens_k = long_len}, {}, o, lse); });
  EXPECT_NE(m.find("outside [0, 5]"), std::string::npos) << m;

  int32_t cu[3] = {0, 1, 3};
  m = error_of([&] { attention_forward(q, k3, k3, Seqs{.cu_seqlens_q = cu, .cu_seqlens_k = cu}, {}, o, lse); });
  EXPECT_NE(m.find("past their"), std::string::npos) << m;

  // Ragged queries: one count per batch, within [0, T], and not with packed sequences.
  m = error_of([&] { attention_forward(q, k3, k3, Seqs{.seqlens_q = lens}, {}, o, lse); });
  EXPECT_NE(m.find("seqlens_q has 2 entries"), std::string::npos) << m;
  int32_t three[1] = {3};
  m = error_of([&] { attention_forward(q, k3, k3, Seqs{.seqlens_q = three}, {}, o, lse); });
  EXPECT_NE(m.find("seqlens_q[0] = 3 is outside [0, 2]"), std::string::npos) << m;
  int32_t neg[1] = {-1};
  m = error_of([&] { attention_forward(q, k3, k3, Seqs{.seqlens_q = neg}, {}, o, lse); });
  EXPECT_NE(m.find("outside [0, 2]"), std::string::npos) << m;
  int32_t cu2[2] = {0, 2}, one[1] = {1};
  m = error_of([&] {
    attention_forward(q, k3, k3, Seqs{.cu_seqlens_q = cu2, .cu_seqlens_k = cu2, .seqlens_q = one}, {}, o, lse);
  });
  EXPECT_NE(m.find("either seqlens_q or cu_seqlens"), std::string::npos) << m;
}

TEST(Errors, SelectBudgets) {
  Buffer scores(DType::f32, {1, 1, 2, 10}), idx(DType::i32, {1, 1, 2, 4});
  auto msg = [&](SelectOpts sel) { return error_of([&] { topk_select(scores, {}, {}, sel, idx); }); };
  EXPECT_NE(msg({}).find("exactly one budget"), std::string::npos);
  EXPECT_NE(msg({.k = 2, .ratio = 0.5}).find("exactly one budget"), std::string::npos);
  EXPECT_NE(msg({.ratio = 1.5}).find("ratio = 1.5 must be in (0, 1]"), std::string::npos);
  EXPECT_NE(msg({.k = 6}).find("this budget needs 6"), std::string::npos);
  EXPECT_NE(msg({.k = 2, .sink = -1}).find(">= 0"), std::string::npos);
  Buffer idx1(DType::i32, {1, 1, 1, 4});
  std::string m = error_of([&] { topk_select(scores, {}, {}, {.k = 2}, idx1); });
  EXPECT_NE(m.find("share_group"), std::string::npos) << m;
}

TEST(Errors, DeviceMismatchAndMissingCuda) {
  Buffer q(DType::f32, {1, 1, 2, 8}), k(DType::f32, {1, 5, 2, 8});
  Buffer o(DType::f32, {1, 1, 2, 8}), lse(DType::f32, {1, 1, 2});
  AttnOpts cuda_opts;
  cuda_opts.backend = Backend::cuda;
  std::string m = error_of([&] { attention_forward(q, k, k, {}, cuda_opts, o, lse); });
  EXPECT_NE(m.find("cannot run on cpu tensors"), std::string::npos) << m;
}

}  // namespace
