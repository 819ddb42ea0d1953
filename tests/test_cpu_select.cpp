// CPU top-k select against the reference: indices must match exactly (ties, NaN, -inf,
// budgets, sink/window, group sharing, causal and ragged visibility).
#include "cpu_test_util.h"

namespace topk::test {
namespace {

// Scores with many exact ties (few distinct values), a sprinkle of NaN, +-inf and -0/+0.
Buffer tie_scores(int B, int T, int H, int S, Rng& rng, int levels) {
  Buffer s(DType::f32, {B, T, H, S});
  float* x = s.ptr<float>();
  for (int64_t i = 0; i < s.numel(); i++) {
    uint64_t r = rng.below(100);
    if (r == 0) x[i] = std::nanf("");
    else if (r == 1) x[i] = -INFINITY;
    else if (r == 2) x[i] = -0.0f;
    else if (r == 3) x[i] = 0.0f;
    else x[i] = levels > 0 ? float(rng.below(levels)) * 0.25f - 1.0f : rng.normal();
  }
  return s;
}

void check_select(const Case& c, const SelectOpts& sel, const Buffer& scores, int hsel) {
  int64_t K = select_capacity(sel, c.S) + 2;  // extra columns must be -1
  Buffer i1(DType::i32, {c.B, c.T, hsel, K}), i2(DType::i32, {c.B, c.T, hsel, K});
  topk_select(scores, c.seqs(), c.opts(Backend::ref), sel, i1);
  topk_select(scores, c.seqs(), c.opts(Backend::cpu), sel, i2);
  auto a = ivec(i1), b = ivec(i2);
  for (size_t i = 0; i < a.size(); i++) {
    if (a[i] != b[i]) {
      ADD_FAILURE() << "row " << i / K << " column " << i % K << ": cpu " << b[i] << ", ref " << a[i];
      return;
    }
  }
}

std::vector<SelectOpts> budgets() {
  std::vector<SelectOpts> v;
  auto add = [&](int k, double ratio, int min_k, int sink, int window, bool share) {
    SelectOpts s;
    s.k = k;
    s.ratio = ratio;
    s.min_k = min_k;
    s.sink = sink;
    s.window = window;
    s.share_group = share;
    v.push_back(s);
  };
  for (bool share : {false, true}) {
    for (int k : {1, 5, 63, 64, 65, 1000}) add(k, 0, 0, 0, 0, share);  // 1000 >= S: all keys
    add(0, 0.07, 0, 0, 0, share);
    add(0, 0.5, 3, 0, 0, share);
    add(0, 0.01, 9, 0, 0, share);  // min_k floor
    add(10, 0, 0, 4, 3, share);    // sink + window
    add(3, 0, 0, 4, 3, share);     // forced keys exceed the budget
    add(20, 0, 0, 0, 300, share);  // window covers everything
  }
  return v;
}

class CpuSelect : public IsaTest {};

TEST_P(CpuSelect, MatchesRefExactly) {
  Rng rng(11);
  std::vector<Case> cs;
  cs.push_back({"decode", 1, 1, 300, 8, 2, 1});
  cs.push_back({"mha", 2, 3, 129, 4, 4, 1});
  cs.push_back({"g4_causal", 1, 70, 70, 8, 2, 1, true});
  Case rag{"ragged", 3, 2, 100, 4, 1, 1, true};
  rag.seqlens_k = {0, 37, 100};
  cs.push_back(rag);
  Case pk{"packed", 1, 10, 130, 4, 2, 1, true};
  pk.cu_q = {0, 3, 3, 10};
  pk.cu_k = {0, 40, 50, 130};
  cs.push_back(pk);
  Case qp{"q_pos", 2, 4, 90, 2, 1, 1, true};
  qp.q_pos = {0, 40};
  cs.push_back(qp);
  for (const Case& c : cs) {
    for (int levels : {4, 64, 0}) {
      Buffer scores = tie_scores(c.B, c.T, c.Hq, c.S, rng, levels);
      for (const SelectOpts& sel : budgets()) {
        SCOPED_TRACE(case_name(c) + " levels " + std::to_string(levels) + " k " +
                     std::to_string(sel.k) + " ratio " + std::to_string(sel.ratio) + " min_k " +
                     std::to_string(sel.min_k) + " sink " + std::to_string(sel.sink) +
                     " window " + std::to_string(sel.window) + (sel.share_group ? " shared" : ""));
        check_select(c, sel, scores, sel.share_group ? c.Hkv : c.Hq);
      }
    }
  }
}

// Rows of at least 128 candidates take the linear-bucket path (AVX2 and AVX-512 copies), with
// 256 buckets below 4096 and 2048 from there: sizes around both, heavy ties, rows with no
// spread or no finite values, and a huge dynamic range. The resolve step sorts the last 32 or
// fewer keys and counts 8-bit digits below 1024 keys; the budgets here reach both.
TEST_P(CpuSelect, LongRowsMatchRefExactly) {
  Rng rng(12);
  for (int S : {127, 128, 129, 1023, 1024, 4095, 4096, 5000}) {
    Case c{"long", 1, 2, S, 4, 2, 1, true};
    for (int kind = 0; kind < 7; kind++) {
      Buffer scores = tie_scores(c.B, c.T, c.Hq, c.S, rng, kind == 0 ? 4 : kind == 1 ? 1000 : 0);
      float* x = scores.ptr<float>();
      for (int64_t i = 0; i < scores.numel(); i++) {
        if (kind == 3) x[i] = 1.5f;                                          // no spread
        if (kind == 4) x[i] = i % 3 == 0 ? std::nanf("") : i % 3 == 1 ? INFINITY : -INFINITY;
        if (kind == 5 && i % 97 != 0) x[i] = std::nanf("");                  // few finite
        if (kind == 6 && i % 50 == 0) x[i] = i % 100 == 0 ? 1e30f : -1e30f;  // huge range
      }
      for (const SelectOpts& sel : budgets()) {
        SCOPED_TRACE("S " + std::to_string(S) + " kind " + std::to_string(kind) + " k " +
                     std::to_string(sel.k) + " ratio " + std::to_string(sel.ratio) +
                     (sel.share_group ? " shared" : ""));
        check_select(c, sel, scores, sel.share_group ? c.Hkv : c.Hq);
      }
    }
  }
}

// Rows of at least 8192 candidates and a budget of at most an eighth of them take a threshold
// from a sample first (AVX-512 copy): ties across its bucket boundary, NaN and infinities, a
// huge range, rising scores (the best at the end), the best scores exactly where the sample
// looks (so the sampled threshold keeps too few and the exact path takes over), and budgets at
// the limit.
TEST_P(CpuSelect, VeryLongRowsMatchRefExactly) {
  Rng rng(13);
  for (int S : {8192, 8195, 20000}) {
    Case c{"very_long", 1, 1, S, 4, 2, 1};
    for (int kind = 0; kind < 6; kind++) {
      Buffer scores = tie_scores(c.B, c.T, c.Hq, c.S, rng, kind == 1 ? 4 : kind == 2 ? 5000 : 0);
      float* x = scores.ptr<float>();
      for (int64_t i = 0; i < scores.numel(); i++) {
        if (kind == 3 && i % 50 == 0) x[i] = i % 100 == 0 ? 1e30f : -1e30f;
        if (kind == 4) x[i] = float(i % S) * 1e-3f;
        if (kind == 5) x[i] = (i % S) % 128 < 16 ? 10.0f + x[i] : x[i];
      }
      std::vector<SelectOpts> sels;
      for (int k : {1, 37, 1000, S / 8, S / 8 + 1}) {
        SelectOpts s;
        s.k = k;
        sels.push_back(s);
      }
      SelectOpts r;
      r.ratio = 0.05;
      sels.push_back(r);
      SelectOpts f;
      f.k = 100;
      f.sink = 3;
      f.window = 5;
      sels.push_back(f);
      for (const SelectOpts& sel : sels) {
        SCOPED_TRACE("S " + std::to_string(S) + " kind " + std::to_string(kind) + " k " +
                     std::to_string(sel.k) + " ratio " + std::to_string(sel.ratio));
        check_select(c, sel, scores, c.Hq);
      }
    }
  }
}

TEST_P(CpuSelect, TiesGoToLowerIndexAndOrderIsAscending) {
  // Every score equal: the selection must be exactly keys 0..k-1.
  Case c{"flat", 1, 1, 500, 2, 2, 1};
  Buffer scores(DType::f32, {1, 1, 2, 500});
  for (int64_t i = 0; i < scores.numel(); i++) scores.ptr<float>()[i] = 0.5f;
  SelectOpts sel;
  sel.k = 100;
  Buffer idx(DType::i32, {1, 1, 2, 100});
  topk_select(scores, c.seqs(), c.opts(Backend::cpu), sel, idx);
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < 100; i++) ASSERT_EQ(idx.ptr<int32_t>()[h * 100 + i], i);
  // Distinct scores decreasing with the index except a block of ties at the threshold.
  for (int j = 0; j < 500; j++) scores.ptr<float>()[j] = j < 90 ? 10.0f - j * 0.01f : 1.0f;
  topk_select(scores, c.seqs(), c.opts(Backend::cpu), sel, idx);
  for (int i = 0; i < 100; i++) ASSERT_EQ(idx.ptr<int32_t>()[i], i);
  // Reverse: the best keys are at the end; output stays ascending.
  for (int j = 0; j < 500; j++) scores.ptr<float>()[j] = float(j);
  topk_select(scores, c.seqs(), c.opts(Backend::cpu), sel, idx);
  for (int i = 0; i < 100; i++) ASSERT_EQ(idx.ptr<int32_t>()[i], 400 + i);
}

TOPK_PER_ISA(CpuSelect);

}  // namespace
}  // namespace topk::test
