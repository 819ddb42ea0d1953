// Prefill and training forwards on CUDA against the scalar reference: the FlashAttention-2
// kernels of attention_forward, warpgroup and mma.sync (bf16/f16 q, k, v; sizes around their
// 128-row and 64-key tiles; every sequence layout), and top-k attention's causal prefill under
// the workspace budget.
#include <algorithm>
#include <set>

#include "cuda_test_util.h"

using namespace topk;
using namespace topk::cudatest;

namespace {

struct FwdCase {
  Layout l;
  int Hq = 8, Hkv = 2, D = 64;
  DType dt = DType::bf16, odt = DType::f32;
  bool causal = false;
};

std::string describe(const FwdCase& c) {
  return testing::PrintToString(c.l.B) + "x" + std::to_string(c.l.T) + " S=" + std::to_string(c.l.S) +
         " Hq=" + std::to_string(c.Hq) + " Hkv=" + std::to_string(c.Hkv) + " D=" + std::to_string(c.D) +
         " " + dtype_name(c.dt) + "->" + dtype_name(c.odt) + (c.causal ? " causal" : "") +
         (c.l.packed() ? " packed" : "") + (c.l.seqlens_q.empty() ? "" : " seqlens_q") +
         (c.l.seqlens_k.empty() ? "" : " seqlens_k") + (c.l.q_pos.empty() ? "" : " q_pos");
}

// The tensor-core kernel rounds the softmax weights to 16 bits before P V (FlashAttention's
// precision): o agrees to ~1e-2; lse is fp32-exact. The split-KV path (f32 q) is tighter.
void check_forward_path(const FwdCase& c, uint64_t seed, bool flash);

// The flash cases run on both kernels: warpgroup MMAs (where the GPU has them, D 64 and 128) and
// mma.sync, each forced.
void check_forward(const FwdCase& c, uint64_t seed, bool flash = true) {
  if (!flash) return check_forward_path(c, seed, flash);  // the split-KV kernel: one path
  for (const char* path : {"wgmma", "mma"}) {
    SCOPED_TRACE(std::string("TOPK_CUDA_FLASH_PATH=") + path);
    ScopedEnv env("TOPK_CUDA_FLASH_PATH", path);
    check_forward_path(c, seed, flash);
  }
}

void check_forward_path(const FwdCase& c, uint64_t seed, bool flash) {
  SCOPED_TRACE(describe(c));
  const Layout& l = c.l;
  Qkv in(l, c.Hq, c.Hkv, c.D, c.dt, c.dt, seed);
  if (!flash) {  // f32 q over 16-bit k, v: not the flash kernel's dtypes
    Pair q32(DType::f32, {l.B, l.T, c.Hq, c.D});
    copy(q32.host, in.q.host);
    q32.upload();
    in.q.host = std::move(q32.host);
    in.q.dev = std::move(q32.dev);
  }
  Pair o(c.odt, {l.B, l.T, c.Hq, c.D}), lse(DType::f32, {l.B, l.T, c.Hq});
  std::vector<unsigned char> first_o, first_lse;
  for (int rep = 0; rep < 2; rep++) {
    poison(o.dev);
    poison(lse.dev);
    attention_forward(in.q.dev, in.k.dev, in.v.dev, l.seqs(), opts(c.causal, Backend::automatic), o.dev, lse.dev);
    if (rep == 0) {
      first_o = o.bytes();
      first_lse = lse.bytes();
    } else {  // determinism: the second run is bit-identical
      EXPECT_TRUE(first_o == o.bytes()) << "o differs between two runs";
      EXPECT_TRUE(first_lse == lse.bytes()) << "lse differs between two runs";
    }
  }
  attention_forward(in.q.host, in.k.host, in.v.host, l.seqs(), opts(c.causal, Backend::ref), o.host, lse.host);
  const double tol = flash ? 1e-2 : (c.odt == DType::f32 ? 2e-4 : 1e-2);
  expect_close(o.download(), host_vals(o.host), tol, tol, "o", l.owned(int64_t(c.Hq) * c.D));
  expect_close(lse.download(), host_vals(lse.host), 1e-4, 1e-5, "lse", l.owned(c.Hq));
}

Layout batched(int64_t B, int64_t T, int64_t S) {
  Layout l;
  l.B = B;
  l.T = T;
  l.S = S;
  return l;
}

}  // namespace

// Sizes around the 128-row query tile and the 64-key tile, prefill (S = T) and a cached prefix
// (S > T), every group size, head dims 64, 128 and 256, both 16-bit dtypes, both output dtypes.
TEST(CudaFlash, ForwardTileSizes) {
  NEED_GPU();
  uint64_t seed = 2000;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv] : {std::pair{4, 4}, {8, 2}, {16, 2}})
      for (int64_t T : {16, 63, 64, 65, 127, 128, 129})
        for (bool causal : {false, true}) {
          FwdCase c;
          c.l = batched(2, T, (seed % 3 == 0) ? T + 70 : T);
          c.Hq = Hq;
          c.Hkv = Hkv;
          c.D = D;
          c.causal = causal;
          c.dt = (seed & 1) ? DType::f16 : DType::bf16;
          c.odt = (seed & 2) ? DType::bf16 : DType::f32;
          check_forward(c, seed++);
          if (testing::Test::HasFailure()) return;
        }
}

// Every sequence form: ragged seqlens_q and seqlens_k (an empty sequence, one with no keys, a
// single query), packed sequences (one with keys but no queries), explicit positions, more
// causal queries than keys (rows that see nothing: o = 0, lse = +inf), and longer rows.
TEST(CudaFlash, ForwardLayouts) {
  NEED_GPU();
  uint64_t seed = 2100;
  for (int D : {64, 128, 256})
    for (bool causal : {false, true}) {
      FwdCase rag;
      rag.l = batched(4, 150, 300);
      rag.l.seqlens_q = {150, 1, 0, 77};
      rag.l.seqlens_k = {300, 40, 10, 0};
      rag.D = D;
      rag.causal = causal;
      check_forward(rag, seed++);
      FwdCase pk;
      pk.l = batched(1, 331, 351);
      pk.l.cu_q = {0, 130, 130, 200, 331};
      pk.l.cu_k = {0, 130, 150, 220, 351};
      pk.Hq = 16;
      pk.D = D;
      pk.causal = causal;
      pk.odt = DType::bf16;
      check_forward(pk, seed++);
      FwdCase qp;
      qp.l = batched(2, 100, 300);
      qp.l.q_pos = {0, 150};
      qp.Hq = qp.Hkv = 4;
      qp.D = D;
      qp.causal = causal;
      qp.dt = DType::f16;
      check_forward(qp, seed++);
    }
  FwdCase over;  // causal, 200 queries at the end of 150 keys: the first 50 see nothing
  over.l = batched(1, 200, 150);
  over.causal = true;
  check_forward(over, seed++);
  FwdCase lng;  // many key tiles, a ragged last query tile
  lng.l = batched(1, 1000, 1000);
  lng.Hq = 8;
  lng.Hkv = 1;
  lng.D = 128;
  lng.causal = true;
  check_forward(lng, seed++);
  FwdCase f32q;  // f32 q: the split-KV path, still right
  f32q.l = batched(2, 64, 200);
  f32q.causal = true;
  check_forward(f32q, seed++, false);
}

// K and V as slices of a larger cache: 16-byte aligned (the tensor-core kernel reads them in
// place) and with an odd element offset (the split-KV path takes them).
TEST(CudaFlash, ForwardStridedCache) {
  NEED_GPU();
  const int64_t B = 2, T = 70, S = 200, Hkv = 2, D = 64, Hq = 8, W = (Hkv + 2) * D + 8;
  Rng rng(2200);
  Buffer big_h(DType::bf16, {B, S, 1, W}), q_h(DType::bf16, {B, T, Hq, D});
  fill_random(big_h, rng);
  fill_random(q_h, rng, 1.5f);
  Buffer big_d(DType::bf16, {B, S, 1, W}, Device::cuda), q_d(DType::bf16, {B, T, Hq, D}, Device::cuda);
  copy(big_d, big_h);
  copy(q_d, q_h);
  auto slice = [&](const Buffer& b, int64_t off) {
    TensorView v = b.view();
    v.data = static_cast<char*>(v.data) + off * 2;
    v.shape[2] = Hkv;
    v.shape[3] = D;
    v.stride[2] = D;
    return v;
  };
  for (int64_t base : {int64_t(8), int64_t(1)}) {
    SCOPED_TRACE(base == 8 ? "aligned" : "unaligned");
    Pair o(DType::f32, {B, T, Hq, D}), lse(DType::f32, {B, T, Hq});
    poison(o.dev);
    poison(lse.dev);
    attention_forward(q_d, slice(big_d, base), slice(big_d, base + Hkv * D), {}, opts(true, Backend::automatic), o.dev, lse.dev);
    attention_forward(q_h, slice(big_h, base), slice(big_h, base + Hkv * D), {}, opts(true, Backend::ref), o.host, lse.host);
    expect_close(o.download(), host_vals(o.host), 1e-2, 1e-2, "o");
    expect_close(lse.download(), host_vals(lse.host), 1e-4, 1e-5, "lse");
  }
}

// ---- top-k attention: causal prefill under the workspace budget ----

namespace {

// Rows [r0, r0 + n) of batch b of a [B, R, H, D] host tensor as a [1, n, H, D] tensor.
Buffer rows_of(const Buffer& x, int64_t b, int64_t r0, int64_t n) {
  const TensorView& v = x.view();
  const size_t row = size_t(v.shape[2] * v.shape[3]) * dtype_size(v.dtype);
  Buffer out(v.dtype, {1, n, v.shape[2], v.shape[3]});
  std::memcpy(out.ptr<char>(), x.ptr<char>() + (size_t(b * v.shape[1] + r0)) * row, size_t(n) * row);
  return out;
}

// Query row t of sequence i: the device's indices, o and lse against the reference run on that
// row alone (q_pos = the row's position). Index sets must match up to near-ties of the scores
// (fp32 on the device, double in the reference); o and lse are checked against the reference
// sparse attention over the device's own indices.
void check_topk_row(const Layout& l, const Qkv& in, int Hq, int Hkv, int D, const SelectOpts& sel,
                    const std::vector<float>& o_got, const std::vector<float>& lse_got,
                    const std::vector<float>& idx_got, int64_t K, int64_t i, int64_t t) {
  int64_t b, q0, nq, k0, nk;
  l.seq(i, b, q0, nq, k0, nk);
  SCOPED_TRACE(testing::Message() << "sequence " << i << " row " << t);
  const int Hsel = sel.share_group ? Hkv : Hq, G = Hq / Hsel;
  Buffer q1 = rows_of(in.q.host, b, q0 + t, 1), k1 = rows_of(in.k.host, b, k0, nk), v1 = rows_of(in.v.host, b, k0, nk);
  std::vector<int32_t> pos = {int32_t(nk - nq + t)};
  Seqs seqs;
  seqs.q_pos = pos;
  const AttnOpts ro = opts(true, Backend::ref);
  Buffer sc(DType::f32, {1, 1, Hq, nk});
  attention_scores(q1, k1, seqs, ro, sc);
  Buffer ref_idx(DType::i32, {1, 1, Hsel, K});
  topk_select(sc, seqs, ro, sel, ref_idx);
  Buffer idx(DType::i32, {1, 1, Hsel, K});
  const int64_t qrow = b * l.T + q0 + t;
  for (int64_t e = 0; e < Hsel * K; e++) idx.ptr<int32_t>()[e] = int32_t(idx_got[size_t(qrow * Hsel * K + e)]);
  for (int hs = 0; hs < Hsel; hs++) {
    std::set<int32_t> got, want;
    for (int64_t e = 0; e < K; e++) {
      const int32_t x = idx.ptr<int32_t>()[hs * K + e], y = ref_idx.ptr<int32_t>()[hs * K + e];
      if (x >= 0) {
        ASSERT_TRUE(got.insert(x).second) << "head " << hs << ": index " << x << " twice";
      }
      if (y >= 0) want.insert(y);
    }
    ASSERT_EQ(got.size(), want.size()) << "head " << hs;
    // Rank of each key (the head's score, or the group's probability sum) for near-ties.
    std::vector<double> rank(size_t(nk), 0.0);
    for (int g = 0; g < G; g++) {
      const float* s = sc.ptr<float>() + int64_t(hs * G + g) * nk;
      double m = -1e300, z = 0;
      for (int64_t j = 0; j < nk; j++) m = std::max(m, double(s[j]));
      for (int64_t j = 0; j < nk; j++) z += std::isinf(s[j]) ? 0 : std::exp(double(s[j]) - m);
      for (int64_t j = 0; j < nk; j++)
        rank[size_t(j)] = G == 1 ? double(s[j]) : rank[size_t(j)] + (std::isinf(s[j]) ? 0 : std::exp(double(s[j]) - m) / z);
    }
    double lo = 1e300;
    for (int32_t x : want) lo = std::min(lo, rank[size_t(x)]);
    for (int32_t x : got) {
      ASSERT_TRUE(x < nk) << "head " << hs << ": index " << x << " past the sequence";
      if (!want.count(x)) {
        EXPECT_GE(rank[size_t(x)], lo - (G > 1 ? 1e-6 : 1e-5)) << "head " << hs << " chose " << x;
      }
    }
  }
  Buffer o_ref(DType::f32, {1, 1, Hq, D}), lse_ref(DType::f32, {1, 1, Hq});
  sparse_attention_forward(q1, k1, v1, idx, seqs, ro, o_ref, lse_ref);
  std::vector<float> og(o_got.begin() + qrow * Hq * D, o_got.begin() + (qrow + 1) * Hq * D);
  std::vector<float> lg(lse_got.begin() + qrow * Hq, lse_got.begin() + (qrow + 1) * Hq);
  expect_close(og, host_vals(o_ref), 2e-4, 2e-4, "o");
  expect_close(lg, host_vals(lse_ref), 1e-4, 1e-5, "lse");
}

// Top-k causal prefill on the device, then the listed rows (every row when rows is empty) of
// every sequence against the reference; every owned row must be written.
void check_topk_prefill(const Layout& l, int Hq, int Hkv, int D, DType dt, const SelectOpts& sel,
                        uint64_t seed, const std::vector<int64_t>& rows = {}) {
  Qkv in(l, Hq, Hkv, D, dt, dt, seed);
  const int Hsel = sel.share_group ? Hkv : Hq;
  int64_t longest = 0;
  for (int64_t i = 0; i < l.nseq(); i++) {
    int64_t b, q0, nq, k0, nk;
    l.seq(i, b, q0, nq, k0, nk);
    longest = std::max(longest, nk);
  }
  const int64_t K = select_capacity(sel, longest);
  Pair o(DType::f32, {l.B, l.T, Hq, D}), lse(DType::f32, {l.B, l.T, Hq}), idx(DType::i32, {l.B, l.T, Hsel, K});
  poison(o.dev);
  poison(lse.dev);
  poison(idx.dev);
  topk_attention_forward(in.q.dev, in.k.dev, in.v.dev, l.seqs(), opts(true, Backend::automatic), sel, o.dev, lse.dev, idx.dev);
  const std::vector<float> og = o.download(), lg = lse.download(), ig = idx.download();
  const std::vector<char> owned = l.owned_rows();
  for (size_t r = 0; r < owned.size(); r++) {
    if (!owned[r]) continue;
    for (int64_t e = 0; e < Hq; e++) ASSERT_FALSE(std::isnan(lg[r * Hq + e])) << "row " << r << " not written";
  }
  for (int64_t i = 0; i < l.nseq(); i++) {
    int64_t b, q0, nq, k0, nk;
    l.seq(i, b, q0, nq, k0, nk);
    std::vector<int64_t> ts;
    if (rows.empty()) {
      for (int64_t t = 0; t < nq; t++) ts.push_back(t);
    } else {
      for (int64_t t : rows)
        if (t < nq) ts.push_back(t);
    }
    for (int64_t t : ts) {
      check_topk_row(l, in, Hq, Hkv, D, sel, og, lg, ig, K, i, t);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

struct ForcePath {
  explicit ForcePath(const char* path) { setenv("TOPK_CUDA_TOPK_PATH", path, 1); }
  ~ForcePath() { unsetenv("TOPK_CUDA_TOPK_PATH"); }
};

}  // namespace

// Packed causal prefill of 3 x 2048 tokens: score rows of every query over the packed keys
// would take 6144 x 8 x 6144 x 4 bytes = 1.2 GB (the old code allocated 1 GiB row ranges); the
// workspaces must stay within the budget, and sampled rows of each sequence must be right.
TEST(CudaTopkPrefill, PackedWithinBudget) {
  NEED_GPU();
  Layout l = batched(1, 6144, 6144);
  l.cu_q = l.cu_k = {0, 2048, 4096, 6144};
  const int Hq = 8, Hkv = 2, D = 64;
  ASSERT_GT(l.T * Hq * l.S * 4, int64_t(4 * cuda::kWorkspaceBudget));
  ScopedEnv budget("TOPK_CUDA_WORKSPACE_BUDGET", std::to_string(cuda::kWorkspaceBudget));
  SelectOpts sel;
  sel.k = 64;
  for (const char* path : {"threshold", "general", "gemm", "filtered"}) {
    SCOPED_TRACE(path);
    ForcePath force(path);
    cuda::workspace_release();
    check_topk_prefill(l, Hq, Hkv, D, DType::bf16, sel, 2300, {0, 1, 63, 64, 65, 1000, 2047});
    EXPECT_LE(cuda::workspace_bytes(), cuda::kWorkspaceBudget + (size_t(16) << 20))
        << "workspaces after the call: " << cuda::workspace_bytes() << " bytes";
    if (testing::Test::HasFailure()) return;
  }
}

// A tiny budget forces every split: packed sequences in groups (each group's score rows only
// as long as its longest sequence), a sequence in row ranges, and a ragged batch (sequences
// about as long as the padding: no groups) in row ranges; every row of every sequence against
// the reference, on both pipelines and with group sharing.
TEST(CudaTopkPrefill, GroupsAndRangesUnderSmallBudget) {
  NEED_GPU();
  Layout l = batched(1, 429, 429);
  l.cu_q = l.cu_k = {0, 50, 50, 200, 300, 429};
  ScopedEnv budget("TOPK_CUDA_WORKSPACE_BUDGET", std::to_string(256 << 10));
  SelectOpts sel;
  sel.k = 16;
  for (const char* path : {"threshold", "general", "gemm", "filtered"}) {
    SCOPED_TRACE(path);
    ForcePath force(path);
    check_topk_prefill(l, 8, 2, 64, DType::bf16, sel, 2400);
    if (testing::Test::HasFailure()) return;
  }
  SelectOpts shared;
  shared.ratio = 0.1;
  shared.share_group = true;
  check_topk_prefill(l, 8, 2, 128, DType::f32, shared, 2401);
  // Ragged batches, too: a sequence with fewer queries than the padded T.
  Layout r = batched(3, 100, 260);
  r.seqlens_q = {100, 7, 0};
  r.seqlens_k = {260, 90, 5};
  check_topk_prefill(r, 8, 2, 64, DType::bf16, sel, 2402);
}

namespace {

// The per-head budget forms the prefill paths' tests run: a count, a ratio with min_k, and a
// count with sink and window keys.
struct PrefillBudgets {
  SelectOpts cnt, ratio, forced;
};

PrefillBudgets prefill_budgets() {
  PrefillBudgets b;
  b.cnt.k = 40;
  b.ratio.ratio = 0.05;
  b.ratio.min_k = 20;
  b.forced.k = 24;
  b.forced.sink = 4;
  b.forced.window = 16;
  return b;
}

}  // namespace

// The gemm path (score rows as cuBLAS products, chunks as long as their longest visible row):
// both 16-bit dtypes, G = 1, 4 and 8, every budget form (count, ratio with min_k, sink and
// window, group sharing), packed sequences with more keys than queries, ragged batches, and a
// budget small enough to cut sequences into many chunks. Every row against the reference.
TEST(CudaTopkPrefill, GemmScores) {
  NEED_GPU();
  ForcePath force("gemm");
  const auto [cnt, ratio, forced] = prefill_budgets();
  SelectOpts shared;
  shared.ratio = 0.1;
  shared.share_group = true;
  Layout one = batched(1, 300, 300);
  check_topk_prefill(one, 8, 2, 64, DType::bf16, cnt, 2500);
  check_topk_prefill(one, 4, 4, 128, DType::f16, ratio, 2501);
  check_topk_prefill(one, 8, 2, 128, DType::bf16, forced, 2502);
  check_topk_prefill(one, 8, 2, 64, DType::bf16, shared, 2503);
  Layout pk = batched(1, 331, 351);
  pk.cu_q = {0, 130, 130, 200, 331};
  pk.cu_k = {0, 130, 150, 220, 351};
  check_topk_prefill(pk, 16, 2, 64, DType::bf16, ratio, 2504);
  check_topk_prefill(pk, 16, 2, 128, DType::f16, shared, 2505);
  Layout rag = batched(3, 100, 260);
  rag.seqlens_q = {100, 7, 0};
  rag.seqlens_k = {260, 90, 5};
  check_topk_prefill(rag, 8, 2, 64, DType::bf16, forced, 2506);
  ScopedEnv budget("TOPK_CUDA_WORKSPACE_BUDGET", std::to_string(96 << 10));
  check_topk_prefill(pk, 8, 2, 64, DType::bf16, cnt, 2507);
  check_topk_prefill(rag, 8, 2, 128, DType::f16, shared, 2508);
}

// The filtered path (a sample pass for thresholds, a tensor-core score pass that keeps only the
// keys at or above them, the warp select over those candidates; no score rows): both 16-bit
// dtypes, D = 64, 128 and 256, G = 1, 4 and 8, every per-head budget form, packed and ragged
// layouts, rows long enough to be sampled (more competing keys than a candidate list holds),
// a budget that cuts the call into many chunks, and keys of two distinct rows, whose ties at the
// threshold overflow the lists (those rows are selected from scores computed again). Every
// listed row against the reference.
TEST(CudaTopkPrefill, FilteredPath) {
  NEED_GPU();
  ForcePath force("filtered");
  const auto [cnt, ratio, forced] = prefill_budgets();
  Layout one = batched(1, 300, 300);
  check_topk_prefill(one, 8, 2, 64, DType::bf16, cnt, 2700);
  check_topk_prefill(one, 4, 4, 128, DType::f16, ratio, 2701);
  check_topk_prefill(one, 8, 1, 256, DType::bf16, forced, 2702);
  Layout pk = batched(1, 331, 351);
  pk.cu_q = {0, 130, 130, 200, 331};
  pk.cu_k = {0, 130, 150, 220, 351};
  check_topk_prefill(pk, 16, 2, 64, DType::bf16, ratio, 2703);
  Layout rag = batched(3, 100, 260);
  rag.seqlens_q = {100, 7, 0};
  rag.seqlens_k = {260, 90, 5};
  check_topk_prefill(rag, 8, 2, 64, DType::bf16, forced, 2704);
  // Sampled rows: up to 2999 competing keys against lists of 768 (1536 for the budget of 300).
  Layout lng = batched(1, 3000, 3000);
  const std::vector<int64_t> some = {0, 1, 767, 768, 800, 1000, 1500, 2047, 2048, 2500, 2999};
  check_topk_prefill(lng, 8, 2, 128, DType::bf16, cnt, 2705, some);
  SelectOpts big;
  big.k = 300;
  big.sink = 2;
  big.window = 8;
  check_topk_prefill(lng, 4, 2, 64, DType::f16, big, 2706, some);
  ScopedEnv budget("TOPK_CUDA_WORKSPACE_BUDGET", std::to_string(96 << 10));
  check_topk_prefill(pk, 8, 2, 64, DType::bf16, cnt, 2707);
  check_topk_prefill(lng, 8, 2, 64, DType::bf16, ratio, 2708, some);
}

// Ties at the threshold: every key is one of two distinct rows, so a row's keys at or above its
// threshold are about half of it, past the candidate list; those rows are selected from scores
// computed again, ties to the lowest indices.
TEST(CudaTopkPrefill, FilteredTies) {
  NEED_GPU();
  ForcePath force("filtered");
  Layout l = batched(1, 2000, 2000);
  const int Hq = 4, Hkv = 2, D = 64;
  Qkv in(l, Hq, Hkv, D, DType::bf16, DType::bf16, 2750);
  uint16_t* k = in.k.host.ptr<uint16_t>();
  const int64_t row = Hkv * D;
  for (int64_t j = 2; j < l.S; j++)
    for (int64_t e = 0; e < row; e++) k[j * row + e] = k[(j % 2) * row + e];
  in.k.upload();
  SelectOpts sel;
  sel.k = 50;
  const int64_t K = select_capacity(sel, l.S);
  Pair o(DType::f32, {l.B, l.T, Hq, D}), lse(DType::f32, {l.B, l.T, Hq}), idx(DType::i32, {l.B, l.T, Hq, K});
  topk_attention_forward(in.q.dev, in.k.dev, in.v.dev, l.seqs(), opts(true, Backend::automatic), sel, o.dev, lse.dev, idx.dev);
  const std::vector<float> ig = idx.download();
  // Row t's keys 0..t are two values repeated, each at least 50 times: the 50 chosen are the
  // lowest indices of the larger one. Rows 299 and 999 keep their tied keys as candidates
  // (all of them, or the half at the sampled threshold); row 1999's half overflows the list.
  for (int64_t t : {int64_t(299), int64_t(999), int64_t(1999)})
    for (int64_t h = 0; h < Hq; h++) {
      const int64_t base = (t * Hq + h) * K;
      std::vector<int32_t> got;
      for (int64_t i = 0; i < K; i++) got.push_back(int32_t(ig[size_t(base + i)]));
      for (size_t i = 1; i < got.size(); i++) ASSERT_LT(got[i - 1], got[i]) << "row " << t << " head " << h;
      // The same parity everywhere (one of the two key rows wins), lowest indices first.
      const int32_t first = got[0];
      ASSERT_LE(first, 1) << "row " << t << " head " << h;
      for (size_t i = 0; i < got.size(); i++) EXPECT_EQ(got[i], first + 2 * int32_t(i)) << "row " << t << " head " << h;
    }
}

// The gemm path gives the same bits on every run (cuBLAS on one stream and workspace, and
// selection and attention in fixed orders), and so does the filtered path (fixed-order score
// products, candidate slots by position, selection and attention in fixed orders).
namespace {
void check_prefill_deterministic(const char* path, int64_t T, uint64_t seed) {
  ForcePath force(path);
  Layout l = batched(2, T, T);
  const int Hq = 8, Hkv = 2, D = 128;
  Qkv in(l, Hq, Hkv, D, DType::bf16, DType::bf16, seed);
  SelectOpts sel;
  sel.ratio = 0.05;
  const int64_t K = select_capacity(sel, l.S);
  Pair o(DType::bf16, {l.B, l.T, Hq, D}), lse(DType::f32, {l.B, l.T, Hq}), idx(DType::i32, {l.B, l.T, Hq, K});
  std::vector<unsigned char> first[3];
  for (int rep = 0; rep < 2; rep++) {
    poison(o.dev);
    poison(lse.dev);
    poison(idx.dev);
    topk_attention_forward(in.q.dev, in.k.dev, in.v.dev, l.seqs(), opts(true, Backend::automatic), sel, o.dev, lse.dev, idx.dev);
    const std::vector<unsigned char> got[3] = {o.bytes(), lse.bytes(), idx.bytes()};
    for (int i = 0; i < 3; i++) {
      if (rep == 0) first[i] = got[i];
      else EXPECT_TRUE(first[i] == got[i]) << path << ": output " << i << " differs between two runs";
    }
  }
}
}  // namespace

TEST(CudaTopkPrefill, GemmDeterministic) {
  NEED_GPU();
  check_prefill_deterministic("gemm", 500, 2600);
}

// Rows of up to 1500 keys: past the candidate lists (768), so the sample pass runs too.
TEST(CudaTopkPrefill, FilteredDeterministic) {
  NEED_GPU();
  check_prefill_deterministic("filtered", 1500, 2760);
}
