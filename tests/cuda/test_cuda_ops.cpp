// Every CUDA attention op against the scalar reference (Backend::ref on host copies).
// Fresh random inputs from fixed seeds; device outputs are poisoned (NaN / 0x7f7f7f7f)
// before each call so that unwritten elements fail. Skips when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "core/dtype.h"
#include "attention/cuda/topk/threshold.h"
#include "core/rng.h"
#include "attention/params.h"
#include "attention/plan.h"
#include "topk/attention.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace topk;

namespace {

#define NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

// A tensor with a host copy (f32 values rounded to its dtype) and a device copy.
struct Pair {
  Buffer host, dev;
  Pair(DType dt, std::initializer_list<int64_t> shape) : host(dt, shape), dev(dt, shape, Device::cuda) {}
  void upload() { copy(dev, host); }
  std::vector<float> download() const {
    Buffer h(DType::f32, {1});
    TensorView v = dev.view();
    Buffer same(v.dtype, {v.numel()});
    TensorView flat = dev.view();
    flat.ndim = 1;
    flat.shape[0] = v.numel();
    flat.stride[0] = 1;
    copy(same, flat);
    std::vector<float> out(size_t(v.numel()));
    for (int64_t i = 0; i < v.numel(); i++) out[size_t(i)] = v.dtype == DType::i32 ? float(same.ptr<int32_t>()[i]) : load_f32(same.ptr<void>(), v.dtype, i);
    return out;
  }
};

void fill_random(Buffer& b, Rng& rng, float scale = 1.f) {
  for (int64_t i = 0; i < b.numel(); i++) store_f32(b.ptr<void>(), b.view().dtype, i, scale * rng.normal());
}

// Poison a device tensor: NaN for floats, 0x7f7f7f7f for ints.
void poison(const Buffer& dev) {
  Buffer h(dev.view().dtype, {dev.numel()});
  std::memset(h.ptr<void>(), 0x7f, h.bytes());
  if (dev.view().dtype != DType::i32)
    for (int64_t i = 0; i < h.numel(); i++) store_f32(h.ptr<void>(), h.view().dtype, i, std::nanf(""));
  TensorView flat = dev.view();
  flat.ndim = 1;
  flat.shape[0] = dev.numel();
  flat.stride[0] = 1;
  copy(flat, h);
}

std::vector<float> host_vals(const Buffer& b) {
  std::vector<float> out(size_t(b.numel()));
  for (int64_t i = 0; i < b.numel(); i++) out[size_t(i)] = load_f32(b.ptr<void>(), b.view().dtype, i);
  return out;
}

// o and lse: +inf positions must match, then |a - b| <= atol + rtol |b|.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, float atol,
                  float rtol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size(); i++) {
    float a = got[i], b = want[i];
    bool ok;
    if (std::isinf(b) || std::isinf(a)) ok = a == b;
    else ok = std::isfinite(a) && std::fabs(a - b) <= atol + rtol * std::fabs(b);
    if (!ok && bad++ < 5) ADD_FAILURE() << what << "[" << i << "]: got " << a << ", want " << b;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ";
}

struct Shape {
  int64_t B, T, S;
  int Hq, Hkv, D;
  DType qdt = DType::f32, kvdt = DType::bf16, odt = DType::f32;
  bool causal = false;
  std::vector<int32_t> seqlens;  // ragged, or empty
};

struct Inputs {
  Shape s;
  Pair q, k, v;
  Inputs(const Shape& sh, uint64_t seed)
      : s(sh), q(sh.qdt, {sh.B, sh.T, sh.Hq, sh.D}), k(sh.kvdt, {sh.B, sh.S, sh.Hkv, sh.D}),
        v(sh.kvdt, {sh.B, sh.S, sh.Hkv, sh.D}) {
    Rng rng(seed);
    fill_random(q.host, rng, 1.5f);
    fill_random(k.host, rng);
    fill_random(v.host, rng);
    q.upload();
    k.upload();
    v.upload();
  }
  Seqs seqs() const { return Seqs{s.seqlens, {}, {}, {}}; }
  AttnOpts opts(Backend b) const {
    AttnOpts o;
    o.causal = s.causal;
    o.backend = b;
    return o;
  }
};

void check_forward(const Shape& sh, uint64_t seed) {
  Inputs in(sh, seed);
  Pair o(sh.odt, {sh.B, sh.T, sh.Hq, sh.D}), lse(DType::f32, {sh.B, sh.T, sh.Hq});
  poison(o.dev);
  poison(lse.dev);
  attention_forward(in.q.dev, in.k.dev, in.v.dev, in.seqs(), in.opts(Backend::automatic), o.dev, lse.dev);
  attention_forward(in.q.host, in.k.host, in.v.host, in.seqs(), in.opts(Backend::ref), o.host, lse.host);
  float tol = sh.odt == DType::f32 ? 2e-4f : 1e-2f;
  expect_close(o.download(), host_vals(o.host), tol, tol, "o");
  expect_close(lse.download(), host_vals(lse.host), 1e-4f, 1e-5f, "lse");
}

}  // namespace

TEST(CudaAttention, ForwardDecodeShapes) {
  NEED_GPU();
  uint64_t seed = 1;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv] : {std::pair{4, 4}, {8, 2}, {16, 2}, {12, 1}})
      for (int64_t S : {1, 127, 128, 129, 700}) {
        SCOPED_TRACE(testing::Message() << "D=" << D << " Hq=" << Hq << " Hkv=" << Hkv << " S=" << S);
        check_forward({2, 1, S, Hq, Hkv, D}, seed++);
      }
}

TEST(CudaAttention, ForwardRaggedDtypes) {
  NEED_GPU();
  Shape s{4, 1, 300, 8, 2, 128};
  s.seqlens = {300, 0, 129, 1};
  for (DType kv : {DType::bf16, DType::f16, DType::f32})
    for (DType qd : {DType::f32, DType::bf16})
      for (DType od : {DType::f32, DType::bf16}) {
        s.kvdt = kv;
        s.qdt = qd;
        s.odt = od;
        SCOPED_TRACE(testing::Message() << dtype_name(kv) << " q " << dtype_name(qd) << " o " << dtype_name(od));
        check_forward(s, 100 + int(kv) * 9 + int(qd) * 3 + int(od));
      }
}

TEST(CudaAttention, ForwardCausalPrefill) {
  NEED_GPU();
  Shape s{2, 37, 200, 8, 2, 64};
  s.causal = true;
  s.seqlens = {200, 37};
  check_forward(s, 7);
  Shape t{1, 130, 130, 4, 4, 128};
  t.causal = true;
  t.kvdt = DType::f16;
  check_forward(t, 8);
}

TEST(CudaAttention, ForwardPackedAndStrided) {
  NEED_GPU();
  // Packed sequences, causal.
  {
    Shape s{1, 20, 300, 8, 2, 128};
    Inputs in(s, 11);
    std::vector<int32_t> cq{0, 5, 5, 20}, ck{0, 100, 140, 300};
    Seqs seqs{{}, cq, ck, {}};
    AttnOpts o1;
    o1.causal = true;
    AttnOpts o2 = o1;
    o2.backend = Backend::ref;
    Pair o(DType::f32, {1, 20, 8, 128}), lse(DType::f32, {1, 20, 8});
    poison(o.dev);
    poison(lse.dev);
    attention_forward(in.q.dev, in.k.dev, in.v.dev, seqs, o1, o.dev, lse.dev);
    attention_forward(in.q.host, in.k.host, in.v.host, seqs, o2, o.host, lse.host);
    expect_close(o.download(), host_vals(o.host), 2e-4f, 2e-4f, "o");
    expect_close(lse.download(), host_vals(lse.host), 1e-4f, 1e-5f, "lse");
  }
  // K/V as a slice of a larger cache ([B, S, Hkv + 1, D] with an odd element offset).
  {
    int64_t B = 2, S = 333, Hkv = 2, D = 64, Hq = 8;
    Rng rng(12);
    Buffer big_h(DType::bf16, {B, S, Hkv + 1, D + 1}), q_h(DType::f32, {B, 1, Hq, D});
    fill_random(big_h, rng);
    fill_random(q_h, rng);
    Buffer big_d(DType::bf16, {B, S, Hkv + 1, D + 1}, Device::cuda), q_d(DType::f32, {B, 1, Hq, D}, Device::cuda);
    copy(big_d, big_h);
    copy(q_d, q_h);
    auto slice = [&](const Buffer& b, int off) {
      TensorView v = b.view();
      v.data = static_cast<char*>(v.data) + off * 2;
      v.shape[2] = Hkv;
      v.shape[3] = D;
      return v;
    };
    Pair o(DType::f32, {B, 1, Hq, D}), lse(DType::f32, {B, 1, Hq});
    poison(o.dev);
    attention_forward(q_d, slice(big_d, 1), slice(big_d, D + 1), {}, {}, o.dev, lse.dev);
    AttnOpts r;
    r.backend = Backend::ref;
    attention_forward(q_h, slice(big_h, 1), slice(big_h, D + 1), {}, r, o.host, lse.host);
    expect_close(o.download(), host_vals(o.host), 2e-4f, 2e-4f, "o strided");
    expect_close(lse.download(), host_vals(lse.host), 1e-4f, 1e-5f, "lse strided");
  }
}

TEST(CudaAttention, UnsupportedHeadDim) {
  NEED_GPU();
  Shape s{1, 1, 16, 4, 4, 96};
  Inputs in(s, 3);
  Buffer o(DType::f32, {1, 1, 4, 96}, Device::cuda), lse(DType::f32, {1, 1, 4}, Device::cuda);
  try {
    attention_forward(in.q.dev, in.k.dev, in.v.dev, {}, {}, o, lse);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported head dim 96"), std::string::npos) << e.what();
  }
}

TEST(CudaAttention, Scores) {
  NEED_GPU();
  for (int D : {64, 128, 256}) {
    Shape s{3, 3, 259, 16, 2, D};
    s.causal = true;
    s.seqlens = {259, 3, 100};
    Inputs in(s, 20 + D);
    Pair sc(DType::f32, {3, 3, 16, 259});
    poison(sc.dev);
    attention_scores(in.q.dev, in.k.dev, in.seqs(), in.opts(Backend::automatic), sc.dev);
    attention_scores(in.q.host, in.k.host, in.seqs(), in.opts(Backend::ref), sc.host);
    // Rows of queries past a sequence's end stay untouched by both: mask them.
    auto got = sc.download(), want = host_vals(sc.host);
    for (size_t i = 0; i < got.size(); i++)
      if (std::isnan(got[i]) && want[i] == 0.f) got[i] = 0.f;
    expect_close(got, want, 1e-4f, 1e-5f, "scores");
  }
}

// ---- selection ----

namespace {

// Compares one row of indices as sets. Exact unless tol > 0: then elements of the symmetric
// difference must sit within tol of the boundary rank.
void compare_row(const int32_t* got, const int32_t* want, int64_t K, const std::vector<double>* rank,
                 double tol, const std::string& where) {
  std::vector<int32_t> g, w;
  for (int64_t i = 0; i < K; i++) {
    if (got[i] >= 0) {
      g.push_back(got[i]);
    } else {
      EXPECT_EQ(got[i], -1) << where << " pad value";
    }
    if (want[i] >= 0) w.push_back(want[i]);
  }
  // Valid entries first, then -1 only.
  int64_t nv = int64_t(g.size());
  for (int64_t i = 0; i < nv; i++) EXPECT_GE(got[i], 0) << where << " entry " << i << " after padding";
  std::set<int32_t> gs(g.begin(), g.end()), ws(w.begin(), w.end());
  ASSERT_EQ(gs.size(), g.size()) << where << ": duplicate indices";
  ASSERT_EQ(g.size(), w.size()) << where << ": count";
  if (gs == ws) return;
  ASSERT_TRUE(rank && tol > 0) << where << ": index sets differ";
  double lo = 1e300;
  for (int32_t x : w) lo = std::min(lo, (*rank)[x]);
  for (int32_t x : gs) {
    if (!ws.count(x)) {
      EXPECT_GE((*rank)[x], lo - tol) << where << ": chose " << x;
    }
  }
}

// pattern: 0 (or false) normal scores; 1 (or true), 2: ties; 3: scores rising along the row.
void check_select(int64_t B, int64_t T, int64_t S, int Hq, int Hsel, bool causal,
                  std::vector<int32_t> seqlens, const SelectOpts& sel, uint64_t seed, int pattern) {
  Rng rng(seed);
  Pair sc(DType::f32, {B, T, Hq, S});
  for (int64_t i = 0; i < sc.host.numel(); i++) {
    float x = rng.normal();
    if (pattern == 1) x = std::round(x * 4.f) / 4.f;  // few distinct values: many ties
    if (pattern == 2 && i % 2 == 0) x = 5.f;           // every other key ties, above the rest
    if (pattern == 3) x += 8.f * float(i % S) / float(S);  // the large keys crowd the row's end
    sc.host.ptr<float>()[i] = x;
  }
  sc.upload();
  int64_t K = select_capacity(sel, S) + 3;
  Pair idx(DType::i32, {B, T, Hsel, K});
  poison(idx.dev);
  Seqs seqs{seqlens, {}, {}, {}};
  AttnOpts o;
  o.causal = causal;
  topk_select(sc.dev, seqs, o, sel, idx.dev);
  AttnOpts r = o;
  r.backend = Backend::ref;
  topk_select(sc.host, seqs, r, sel, idx.host);
  auto got = idx.download();
  std::vector<int32_t> gi(got.begin(), got.end());
  int G = Hq / Hsel;
  for (int64_t row = 0; row < B * T * Hsel; row++) {
    std::vector<double> rank(size_t(S), 0.0);
    if (G > 1) {  // group probability sums in double for the near-tie judgement
      int64_t bt = row / Hsel, hs = row % Hsel;
      for (int g = 0; g < G; g++) {
        const float* s = sc.host.ptr<float>() + (bt * Hq + hs * G + g) * S;
        double m = -1e300, l = 0;
        for (int64_t j = 0; j < S; j++) m = std::max(m, double(s[j]));
        for (int64_t j = 0; j < S; j++) l += std::exp(s[j] - m);
        for (int64_t j = 0; j < S; j++) rank[size_t(j)] += std::exp(s[j] - m) / l;
      }
    }
    compare_row(gi.data() + row * K, idx.host.ptr<int32_t>() + row * K, K,
                G > 1 ? &rank : nullptr, G > 1 && !causal && seqlens.empty() ? 1e-6 : 0,
                "row " + std::to_string(row));
    if (testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace

TEST(CudaSelect, CountsRatiosForced) {
  NEED_GPU();
  uint64_t seed = 200;
  for (int64_t S : {1, 5, 4095, 4096, 4097, 10000}) {
    for (int k : {1, 7, 64, 2048, 20000}) {
      SelectOpts sel;
      sel.k = k;
      SCOPED_TRACE(testing::Message() << "S=" << S << " k=" << k);
      check_select(2, 1, S, 4, 4, false, {}, sel, seed++, false);
    }
  }
  SelectOpts r;
  r.ratio = 0.07;
  r.min_k = 3;
  check_select(3, 2, 3000, 8, 8, false, {3000, 17, 0}, r, seed++, false);
  SelectOpts f;
  f.k = 50;
  f.sink = 4;
  f.window = 30;
  check_select(2, 1, 999, 4, 4, false, {999, 40}, f, seed++, false);
  f.sink = 40;
  f.window = 40;  // forced keys alone exceed k
  check_select(1, 1, 60, 2, 2, false, {}, f, seed++, false);
}

TEST(CudaSelect, TiesAndCausal) {
  NEED_GPU();
  SelectOpts sel;
  sel.k = 100;
  check_select(2, 1, 5000, 4, 4, false, {}, sel, 300, true);    // ties: lower index wins
  sel.k = 3000;
  check_select(1, 1, 40000, 2, 2, false, {}, sel, 301, true);   // candidates overflow shared memory
  SelectOpts r;
  r.ratio = 0.3;
  check_select(2, 9, 300, 4, 4, true, {300, 9}, r, 302, false);  // causal rows
}

struct ForceCluster {  // the select's cluster size ("" leaves it to the rule)
  explicit ForceCluster(const char* size) { setenv("TOPK_CUDA_SELECT_CLUSTER", size, 1); }
  ~ForceCluster() { unsetenv("TOPK_CUDA_SELECT_CLUSTER"); }
};

TEST(CudaSelect, LongRowsFewRows) {
  // Few long rows take the cluster path (a row split over several blocks), at each cluster size
  // and at the size the rule picks.
  NEED_GPU();
  for (const char* cl : {"", "4", "8", "16"}) {
    SCOPED_TRACE(testing::Message() << "cluster size " << (*cl ? cl : "by the rule"));
    ForceCluster force(cl);
    SelectOpts sel;
    sel.k = 2048;
    check_select(2, 1, 70001, 4, 4, false, {70001, 33000}, sel, 350, false);
    sel.sink = 3;
    sel.window = 100;
    check_select(1, 1, 40000, 2, 2, false, {}, sel, 351, false);
    SelectOpts r;
    r.ratio = 0.25;
    check_select(1, 1, 50000, 2, 2, false, {}, r, 352, false);
    sel.k = 9000;
    sel.sink = sel.window = 0;
    check_select(1, 1, 33000, 1, 1, false, {}, sel, 353, true);  // ties, many candidates
  }
}

// Many long rows (a block per row, more blocks than SMs) take the sampled select: a sample
// sets a threshold, one pass keeps the keys above it. Budgets up to and past the largest it
// takes, forced keys, ratio budgets over ragged rows, and rows of few distinct values whose
// ties at the threshold overflow the kept keys and fall back to the two-pass select, and rows
// whose large keys crowd one end.
TEST(CudaSelect, SampledLongRows) {
  NEED_GPU();
  uint64_t seed = 370;
  for (int k : {1, 64, 700, 2730, 3000}) {
    SelectOpts sel;
    sel.k = k;
    SCOPED_TRACE(testing::Message() << "k=" << k);
    check_select(1, 40, 20000, 4, 4, false, {}, sel, seed++, false);
  }
  SelectOpts f;
  f.k = 300;
  f.sink = 7;
  f.window = 64;
  check_select(1, 40, 17000, 4, 4, false, {}, f, seed++, false);
  SelectOpts r;
  r.ratio = 0.01;
  r.min_k = 30;
  check_select(3, 12, 40000, 4, 4, false, {40000, 16500, 16384}, r, seed++, false);
  SelectOpts t;
  t.k = 500;
  check_select(1, 40, 20000, 4, 4, false, {}, t, seed++, 1);  // ties among the kept keys
  check_select(1, 40, 20000, 4, 4, false, {}, t, seed++, 2);  // 10000 keys >= the threshold
  check_select(1, 40, 20000, 4, 4, false, {}, t, seed++, 3);  // the kept keys in one region
  t.k = 2730;
  check_select(1, 40, 40000, 4, 4, false, {}, t, seed++, 3);
}

TEST(CudaSelect, GroupSharing) {
  NEED_GPU();
  SelectOpts sel;
  sel.k = 77;
  sel.share_group = true;
  check_select(2, 1, 3000, 8, 2, false, {}, sel, 400, false);
  check_select(1, 1, 500, 16, 2, false, {}, sel, 401, false);
  // The ranking's other shapes: 3 heads a group over rows of an odd stride (one key at a time,
  // causal lengths), and more heads a group (40) than a block has warps.
  check_select(1, 3, 501, 6, 2, true, {}, sel, 402, false);
  check_select(1, 2, 700, 40, 1, false, {}, sel, 403, false);
}

// ---- sparse attention over given indices ----

TEST(CudaSparse, GivenIndices) {
  NEED_GPU();
  uint64_t seed = 500;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv, Hsel] : {std::tuple{8, 2, 8}, {8, 2, 2}, {4, 4, 4}, {16, 2, 2}}) {
      Shape s{3, 2, 400, Hq, Hkv, D};
      s.seqlens = {400, 250, 0};
      s.kvdt = D == 64 ? DType::f16 : DType::bf16;
      Inputs in(s, seed++);
      int64_t K = 300;
      Pair idx(DType::i32, {3, 2, Hsel, K});
      Rng rng(seed++);
      for (int64_t i = 0; i < idx.host.numel(); i++) {
        int64_t c = i % K;
        int32_t x = int32_t(rng.below(420)) - 10;  // some -1.. and some >= S_b
        if (c % 50 == 7) x = 3;                    // duplicates
        idx.host.ptr<int32_t>()[i] = x;
      }
      // One row with no valid index.
      for (int64_t c = 0; c < K; c++) idx.host.ptr<int32_t>()[c] = -1;
      idx.upload();
      Pair o(DType::f32, {3, 2, Hq, D}), lse(DType::f32, {3, 2, Hq});
      poison(o.dev);
      poison(lse.dev);
      SCOPED_TRACE(testing::Message() << "D=" << D << " Hq=" << Hq << " Hsel=" << Hsel);
      sparse_attention_forward(in.q.dev, in.k.dev, in.v.dev, idx.dev, in.seqs(), in.opts(Backend::automatic), o.dev, lse.dev);
      sparse_attention_forward(in.q.host, in.k.host, in.v.host, idx.host, in.seqs(), in.opts(Backend::ref), o.host, lse.host);
      expect_close(o.download(), host_vals(o.host), 2e-4f, 2e-4f, "o");
      expect_close(lse.download(), host_vals(lse.host), 1e-4f, 1e-5f, "lse");
    }
}

// Long lists (up to 2900 keys) over many rows and over few: many key tiles per block, and lists
// split over blocks, per-head and group-shared, with invalid indices.
TEST(CudaSparse, LongListsManyRows) {
  NEED_GPU();
  uint64_t seed = 520;
  for (auto [T, Hsel, K] : {std::tuple{16, 32, 1000}, {16, 8, 1000}, {1, 8, 2900}}) {
    Shape s{4, T, 3000, 32, 8, 128};
    s.seqlens = {3000, 2500, 1200, 3000};
    Inputs in(s, seed++);
    Pair idx(DType::i32, {4, T, Hsel, K});
    Rng rng(seed++);
    for (int64_t i = 0; i < idx.host.numel(); i++)
      idx.host.ptr<int32_t>()[i] = int32_t(rng.below(3020)) - 10;
    idx.upload();
    Pair o(DType::f32, {4, T, 32, 128}), lse(DType::f32, {4, T, 32});
    poison(o.dev);
    poison(lse.dev);
    SCOPED_TRACE(testing::Message() << "T=" << T << " Hsel=" << Hsel << " K=" << K);
    sparse_attention_forward(in.q.dev, in.k.dev, in.v.dev, idx.dev, in.seqs(), in.opts(Backend::automatic), o.dev, lse.dev);
    sparse_attention_forward(in.q.host, in.k.host, in.v.host, idx.host, in.seqs(), in.opts(Backend::ref), o.host, lse.host);
    expect_close(o.download(), host_vals(o.host), 2e-4f, 2e-4f, "o");
    expect_close(lse.download(), host_vals(lse.host), 1e-4f, 1e-5f, "lse");
  }
}

// ---- exact top-k attention ----

namespace {

// exact: the index sets must equal the reference's (inputs whose ties are exact on both sides).
void check_topk_inputs(Inputs& in, const SelectOpts& sel, bool exact = false) {
  const Shape& sh = in.s;
  int Hsel = sel.share_group ? sh.Hkv : sh.Hq;
  int64_t K = select_capacity(sel, sh.S);
  Pair o(sh.odt, {sh.B, sh.T, sh.Hq, sh.D}), lse(DType::f32, {sh.B, sh.T, sh.Hq});
  Pair idx(DType::i32, {sh.B, sh.T, Hsel, K});
  poison(o.dev);
  poison(lse.dev);
  poison(idx.dev);
  topk_attention_forward(in.q.dev, in.k.dev, in.v.dev, in.seqs(), in.opts(Backend::automatic), sel, o.dev, lse.dev, idx.dev);
  topk_attention_forward(in.q.host, in.k.host, in.v.host, in.seqs(), in.opts(Backend::ref), sel, o.host, lse.host, idx.host);
  // The selection: ranks from the reference scores judge near-ties (fp32 vs double scores).
  Buffer sc(DType::f32, {sh.B, sh.T, sh.Hq, sh.S});
  attention_scores(in.q.host, in.k.host, in.seqs(), in.opts(Backend::ref), sc);
  auto got = idx.download();
  std::vector<int32_t> gi(got.begin(), got.end());
  int G = sh.Hq / Hsel;
  for (int64_t row = 0; row < sh.B * sh.T * Hsel; row++) {
    int64_t bt = row / Hsel, hs = row % Hsel;
    std::vector<double> rank(size_t(sh.S), 0.0);
    for (int g = 0; g < G; g++) {
      const float* s = sc.ptr<float>() + (bt * sh.Hq + hs * G + g) * sh.S;
      if (G == 1) {
        for (int64_t j = 0; j < sh.S; j++) rank[size_t(j)] = s[j];
        continue;
      }
      double m = -1e300, l = 0;
      for (int64_t j = 0; j < sh.S; j++) m = std::max(m, double(s[j]));
      for (int64_t j = 0; j < sh.S; j++) l += std::exp(double(s[j]) - m);
      for (int64_t j = 0; j < sh.S; j++) rank[size_t(j)] += std::exp(double(s[j]) - m) / l;
    }
    compare_row(gi.data() + row * K, idx.host.ptr<int32_t>() + row * K, K, exact ? nullptr : &rank,
                G > 1 ? 1e-6 : 1e-5, "row " + std::to_string(row));
    if (testing::Test::HasFatalFailure()) return;
  }
  // Output: the reference sparse attention over the indices CUDA chose.
  Buffer o_ref(sh.odt, {sh.B, sh.T, sh.Hq, sh.D}), lse_ref(DType::f32, {sh.B, sh.T, sh.Hq});
  Buffer idx_h(DType::i32, {sh.B, sh.T, Hsel, K});
  copy(idx_h, idx.dev);
  sparse_attention_forward(in.q.host, in.k.host, in.v.host, idx_h, in.seqs(), in.opts(Backend::ref), o_ref, lse_ref);
  float tol = sh.odt == DType::f32 ? 2e-4f : 1e-2f;
  expect_close(o.download(), host_vals(o_ref), tol, tol, "o");
  expect_close(lse.download(), host_vals(lse_ref), 1e-4f, 1e-5f, "lse");
}

// Forces one top-k pipeline (TOPK_CUDA_TOPK_PATH) while alive.
struct ForcePath {
  explicit ForcePath(const char* path) { setenv("TOPK_CUDA_TOPK_PATH", path, 1); }
  ~ForcePath() { unsetenv("TOPK_CUDA_TOPK_PATH"); }
};

// Forces one selection over stored rows (TOPK_CUDA_STORED_SELECT: clusters or warps) while alive.
struct ForceStored {
  explicit ForceStored(const char* how) { setenv("TOPK_CUDA_STORED_SELECT", how, 1); }
  ~ForceStored() { unsetenv("TOPK_CUDA_STORED_SELECT"); }
};

// Forces the warp select's candidate capacity (TOPK_CUDA_WARP_CAP; "" for the default) while alive.
struct ForceWarpCap {
  explicit ForceWarpCap(const char* cap) { setenv("TOPK_CUDA_WARP_CAP", cap, 1); }
  ~ForceWarpCap() { unsetenv("TOPK_CUDA_WARP_CAP"); }
};

// Per-head selection runs through every pipeline; group sharing has no threshold path. The
// gemm path's score products need q and k of one 16-bit dtype; with others it still runs its
// chunks, over the score kernel's rows. The filtered path takes 16-bit q and k of one dtype and
// per-head selection (the gemm path runs the rest) and has its own selection.
// The general and gemm paths run both selections over stored rows (a cluster per pair, a warp
// per pair).
void check_topk(const Shape& sh, const SelectOpts& sel, uint64_t seed) {
  Inputs in(sh, seed);
  for (const char* path : {"general", "gemm", "threshold", "filtered"}) {
    if (sel.share_group && !std::strcmp(path, "threshold")) return;
    for (const char* stored : {"clusters", "warps"}) {
      const bool own_select = !std::strcmp(path, "threshold") || !std::strcmp(path, "filtered");
      if (own_select && !std::strcmp(stored, "warps")) continue;
      SCOPED_TRACE(testing::Message() << path << " " << stored);
      ForcePath force(path);
      ForceStored by(stored);
      check_topk_inputs(in, sel);
      if (testing::Test::HasFailure()) return;
    }
  }
}

}  // namespace

TEST(CudaTopk, Decode) {
  NEED_GPU();
  uint64_t seed = 600;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv] : {std::pair{8, 8}, {8, 2}, {32, 4}})
      for (bool share : {false, true}) {
        Shape s{3, 1, 3000, Hq, Hkv, D};
        s.seqlens = {3000, 129, 0};
        s.kvdt = (seed & 1) ? DType::f16 : DType::bf16;
        s.qdt = (seed & 2) ? DType::bf16 : DType::f32;
        SelectOpts sel;
        sel.k = 257;
        sel.share_group = share;
        SCOPED_TRACE(testing::Message() << "D=" << D << " Hq=" << Hq << " Hkv=" << Hkv << " share=" << share);
        check_topk(s, sel, seed++);
      }
}

TEST(CudaTopk, LongDecode) {
  NEED_GPU();
  Shape s{2, 1, 40000, 8, 2, 128};
  s.seqlens = {40000, 36000};
  SelectOpts sel;
  sel.k = 2048;
  check_topk(s, sel, 650);
}

// Head dim 256 at the shapes where its kernels change: rows long enough for the threshold
// path's sample and candidate lists, and f32 keys (one K tile per ring stage in the score pass,
// FMA products) beside bf16 (tensor cores), on every pipeline.
TEST(CudaTopk, HeadDim256LongAndF32Keys) {
  NEED_GPU();
  Shape s{2, 1, 40000, 8, 2, 256};
  s.seqlens = {40000, 9000};
  SelectOpts sel;
  sel.k = 2048;
  check_topk(s, sel, 660);
  Shape f{2, 1, 5000, 16, 4, 256};
  f.seqlens = {5000, 777};
  f.kvdt = DType::f32;
  f.qdt = DType::f32;
  SelectOpts small;
  small.k = 300;
  check_topk(f, small, 661);
  f.odt = DType::bf16;
  small.sink = 3;
  small.window = 40;
  check_topk(f, small, 662);
}

TEST(CudaTopk, RatiosForcedAndFull) {
  NEED_GPU();
  Shape s{2, 1, 1000, 8, 2, 128};
  s.seqlens = {1000, 333};
  SelectOpts r;
  r.ratio = 0.05;
  r.min_k = 20;
  check_topk(s, r, 700);
  SelectOpts f;
  f.k = 64;
  f.sink = 4;
  f.window = 16;
  check_topk(s, f, 701);
  SelectOpts all;  // k >= S: full attention, exactly
  all.k = 5000;
  check_topk(s, all, 702);
  s.odt = DType::bf16;
  check_topk(s, r, 703);
}

TEST(CudaTopk, CausalPrefill) {
  NEED_GPU();
  Shape s{2, 24, 300, 8, 2, 64};
  s.causal = true;
  s.seqlens = {300, 24};
  SelectOpts sel;
  sel.k = 40;
  check_topk(s, sel, 800);
  sel.share_group = true;
  check_topk(s, sel, 801);
  // q and k both bf16: the gemm path's scores are cuBLAS products.
  s.qdt = DType::bf16;
  check_topk(s, sel, 802);
  sel.share_group = false;
  check_topk(s, sel, 803);
}

// Exact ties: every key is one of 7 distinct rows, so each score value repeats thousands of
// times across the row and the lowest indices must win, on both pipelines. On the general
// path the tied keys of a row span the slices of several blocks (up to 8 at 60000 keys); an
// odd row length leaves the score rows unaligned for 16-byte loads.
TEST(CudaTopk, TiesAcrossSlices) {
  NEED_GPU();
  for (int64_t S : {int64_t(20001), int64_t(60000)}) {
    Shape s{2, 1, S, 8, 2, 128};
    s.seqlens = {int32_t(S), int32_t(S / 3)};
    Inputs in(s, 950 + uint64_t(S));
    const int64_t row = s.Hkv * s.D;
    for (int64_t b = 0; b < s.B; b++)
      for (int64_t j = 0; j < S; j++)
        for (int64_t e = 0; e < row; e++) {
          const int64_t src = (b * S + j % 7) * row + e, dst = (b * S + j) * row + e;
          if (s.kvdt == DType::f32) in.k.host.ptr<float>()[dst] = in.k.host.ptr<float>()[src];
          else in.k.host.ptr<uint16_t>()[dst] = in.k.host.ptr<uint16_t>()[src];
        }
    in.k.upload();
    SelectOpts sel;
    sel.k = int(S / 4);  // the boundary value's ties straddle slices
    SelectOpts fw;
    fw.k = 3000;
    fw.sink = 5;
    fw.window = 100;
    for (const SelectOpts& o : {sel, fw})
      for (const char* path : {"general", "gemm", "threshold", "filtered"}) {
        SCOPED_TRACE(testing::Message() << "S=" << S << " " << path << " k=" << o.k);
        ForcePath force(path);
        check_topk_inputs(in, o, true);
        if (testing::Test::HasFailure()) return;
      }
  }
}

// The warp selection over stored rows on rows longer than a warp keeps (so they are sampled):
// every budget form up to the largest it takes, decode rows and a causal prefill through the
// gemm path, and rows of 2 distinct scores: the 2500 keys that tie at the top of a 5000-key
// row are all >= the sampled threshold, more than a warp keeps, so that row goes to the
// selection over the whole row (its ties to the lowest indices). Run with the default
// capacities (768 keys, 1536 past a budget of 256) and with the 1024 tier forced.
static void check_warp_select_sampled_rows() {
  ForceStored by("warps");
  Shape s{2, 1, 5000, 8, 2, 128};
  s.seqlens = {5000, 1700};
  SelectOpts cnt;
  cnt.k = 64;
  SelectOpts ratio;
  ratio.ratio = 0.05;
  ratio.min_k = 20;
  SelectOpts forced;
  forced.k = 100;
  forced.sink = 4;
  forced.window = 50;
  SelectOpts most;
  most.k = 512;
  {
    ForcePath force("general");
    Inputs in(s, 960);
    for (const SelectOpts& o : {cnt, ratio, forced, most}) {
      SCOPED_TRACE(testing::Message() << "k=" << o.k << " ratio=" << o.ratio);
      check_topk_inputs(in, o);
      if (testing::Test::HasFailure()) return;
    }
    const int64_t row = s.Hkv * s.D;
    for (int64_t b = 0; b < s.B; b++)
      for (int64_t j = 0; j < s.S; j++)
        for (int64_t e = 0; e < row; e++) {
          const int64_t src = (b * s.S + j % 2) * row + e, dst = (b * s.S + j) * row + e;
          in.k.host.ptr<uint16_t>()[dst] = in.k.host.ptr<uint16_t>()[src];
        }
    in.k.upload();
    SCOPED_TRACE("ties");
    check_topk_inputs(in, cnt, true);
    check_topk_inputs(in, forced, true);
  }
  if (testing::Test::HasFailure()) return;
  ForcePath force("gemm");
  Shape p{1, 2500, 2500, 8, 2, 64};
  p.causal = true;
  p.qdt = DType::bf16;
  Inputs in(p, 961);
  check_topk_inputs(in, ratio);
  check_topk_inputs(in, forced);
}

TEST(CudaTopk, WarpSelectSampledRows) {
  NEED_GPU();
  for (const char* cap : {"", "1024"}) {
    SCOPED_TRACE(std::string("TOPK_CUDA_WARP_CAP=") + cap);
    ForceWarpCap force(cap);
    check_warp_select_sampled_rows();
    if (testing::Test::HasFailure()) return;
  }
}

// Rows long enough for the sampled-threshold path of per-head top-k (rows of more than
// threshold_cap competing keys): ragged lengths, groups of 8, D = 64, f32 K/V, ratio budgets
// with sink and window.
// The threshold path on rows that are sampled, small enough for the sanitizers.
TEST(CudaTopk, ThresholdSmall) {
  NEED_GPU();
  Shape s{2, 1, 5000, 8, 2, 128};
  s.seqlens = {5000, 3500};
  SelectOpts sel;
  sel.k = 64;
  sel.sink = 3;
  sel.window = 20;
  ASSERT_GT(3500 - 23, cuda::threshold_cap(64, s.S));
  check_topk(s, sel, 850);
}

TEST(CudaTopk, ThresholdPath) {
  NEED_GPU();
  Shape s{3, 1, 20000, 16, 2, 64};
  s.seqlens = {20000, 5000, 3100};
  s.kvdt = DType::f32;
  SelectOpts sel;
  sel.k = 64;
  check_topk(s, sel, 900);
  SelectOpts r;
  r.ratio = 0.01;
  r.min_k = 150;
  r.sink = 4;
  r.window = 32;
  check_topk(s, r, 901);
  Shape d{2, 1, 70000, 32, 8, 128};
  d.seqlens = {70000, 12345};
  d.odt = DType::bf16;
  SelectOpts big;
  big.k = 2048;
  check_topk(d, big, 902);
}

// The sample's thresholds against the host: score the same sampled keys in double, take the
// 16-bit key prefix of the need-th largest (topk/threshold.h). Tensor-core (bf16 K) and FMA sums
// round differently from the host, so a threshold may sit one 16-bit bin off when the
// need-th sampled score lies within rounding of a bin edge; anything else fails.
TEST(CudaTopk, SampleThresholds) {
  NEED_GPU();
  auto okey = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (f != f) return 0u;
    if (u == 0x80000000u) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  };
  uint64_t seed = 970;
  int heads = 0, off_by_one = 0;
  for (DType kvdt : {DType::bf16, DType::f32})
    for (int D : {64, 128, 256})
      for (auto [Hq, Hkv] : {std::pair{16, 4}, {16, 2}, {12, 1}}) {
        SCOPED_TRACE(testing::Message() << "kv " << (kvdt == DType::bf16 ? "bf16" : "f32") << " D=" << D << " Hq=" << Hq << " Hkv=" << Hkv);
        Shape sh{3, 1, 30000, Hq, Hkv, D};
        sh.seqlens = {30000, 12000, 100};
        sh.kvdt = kvdt;
        sh.qdt = (seed & 1) ? DType::bf16 : DType::f32;
        Inputs in(sh, seed++);
        SelectOpts sel;
        sel.k = 2048;
        sel.sink = (seed & 1) ? 3 : 0;
        sel.window = (seed & 1) ? 20 : 0;
        Plan plan = plan_attention("test", in.q.dev, in.k.dev, in.v.dev, in.seqs(), in.opts(Backend::cuda));
        Pair thr(DType::i32, {sh.B, sh.Hq});
        poison(thr.dev);
        cuda::sample_thresholds(plan.p, sel, sel.k, thr.dev.ptr<uint32_t>());
        copy(thr.host, thr.dev);
        for (int b = 0; b < sh.B; b++) {
          const int64_t n = sh.seqlens[size_t(b)];
          const int64_t lo = std::min<int64_t>(sel.sink, n), hi = std::max(lo, n - sel.window), m = hi - lo;
          const int64_t W = std::min<int64_t>(sel.k, n), room = W - (lo + n - hi);
          const int64_t take = std::clamp<int64_t>(room, 0, m);
          for (int h = 0; h < sh.Hq; h++) {
            const uint32_t g = uint32_t(thr.host.ptr<int32_t>()[b * sh.Hq + h]);
            if (m <= cuda::threshold_cap(sel.k, sh.S)) {  // every key is a candidate
              EXPECT_EQ(g, take == 0 ? 0xffffffffu : 0u) << "row " << b << " head " << h;
              continue;
            }
            const int64_t ns = cuda::threshold_samples(take, m), e = cuda::threshold_target(take, m);
            const int64_t need = std::min(ns, (e * ns + m - 1) / m);
            std::vector<uint32_t> keys;
            for (int64_t i = 0; i < ns; i++) {
              const int64_t j = lo + cuda::threshold_sample_pos(i, ns, m);
              double d = 0;
              for (int c = 0; c < D; c++)
                d += double(load_f32(in.q.host.ptr<void>(), sh.qdt, (int64_t(b) * sh.Hq + h) * D + c)) *
                     load_f32(in.k.host.ptr<void>(), kvdt, ((b * sh.S + j) * sh.Hkv + h / (Hq / Hkv)) * D + c);
              keys.push_back(okey(float(d * plan.p.scale)));
            }
            std::nth_element(keys.begin(), keys.begin() + (need - 1), keys.end(), std::greater<uint32_t>());
            const uint32_t want = keys[size_t(need - 1)] >> 16 << 16;
            heads++;
            if (g != want) {
              off_by_one++;
              EXPECT_TRUE(g == want + 0x10000u || g + 0x10000u == want)
                  << "row " << b << " head " << h << ": got " << std::hex << g << ", want " << want;
            }
          }
        }
      }
  EXPECT_LE(off_by_one * 50, heads) << off_by_one << " of " << heads << " thresholds one bin off";
}

// Rows whose candidates cannot decide the selection are redone from full scores: every score
// tied (too many candidates), and keys that put every sampled position far above the rest
// (fewer candidates than the budget).
TEST(CudaTopk, ThresholdFallback) {
  NEED_GPU();
  ForcePath force("threshold");
  Shape s{2, 1, 20000, 8, 2, 128};
  s.seqlens = {20000, 9000};
  {
    Inputs in(s, 950);
    for (int64_t i = 0; i < in.q.host.numel(); i++) store_f32(in.q.host.ptr<void>(), s.qdt, i, 0.f);
    in.q.upload();
    SelectOpts sel;
    sel.k = 300;
    sel.sink = 2;
    check_topk_inputs(in, sel);
  }
  {
    Inputs in(s, 951);
    // q . k = 8 * k[0] for every head; sampled keys get k[0] = 4, the others |k[0]| < 1.
    for (int64_t i = 0; i < in.q.host.numel(); i++)
      store_f32(in.q.host.ptr<void>(), s.qdt, i, i % s.D == 0 ? 8.f : 0.f);
    SelectOpts sel;
    sel.k = 1000;
    for (int b = 0; b < s.B; b++) {
      const int64_t m = s.seqlens[size_t(b)], take = sel.k;
      const int64_t ns = cuda::threshold_samples(take, m);
      ASSERT_GT(m, cuda::threshold_cap(sel.k, s.S));
      ASSERT_LT(ns, take);
      for (int64_t j = 0; j < m; j++)
        for (int h = 0; h < s.Hkv; h++) {
          int64_t e = ((b * s.S + j) * s.Hkv + h) * s.D;
          float x = load_f32(in.k.host.ptr<void>(), s.kvdt, e);
          store_f32(in.k.host.ptr<void>(), s.kvdt, e, std::fmod(x, 1.f));
        }
      for (int64_t i = 0; i < ns; i++)
        for (int h = 0; h < s.Hkv; h++) {
          int64_t j = cuda::threshold_sample_pos(i, ns, m);
          store_f32(in.k.host.ptr<void>(), s.kvdt, ((b * s.S + j) * s.Hkv + h) * s.D, 4.f);
        }
    }
    in.q.upload();
    in.k.upload();
    check_topk_inputs(in, sel);
  }
}
