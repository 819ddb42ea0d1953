// Backwards on CUDA against the scalar reference backward: full attention (tensor-core kernels
// for bf16/f16 q, k, v with D 64/128, on warpgroup MMAs and on mma.sync; the simple kernels
// for f32, mixed dtypes and other head dims) and sparse attention over given indices. The
// forward outputs o and lse come from the reference forward, so each test sees only the
// backward. Every run is made twice and must be bit-identical; dq rows of no sequence must stay
// unwritten and dk, dv rows of no sequence 0.
#include <algorithm>
#include <memory>

#include "cuda_test_util.h"

using namespace topk;
using namespace topk::cudatest;

namespace {

struct BwdCase {
  Layout l;
  int Hq = 8, Hkv = 2, D = 64;
  DType dt = DType::bf16;    // q, k, v
  DType odt = DType::bf16;   // o
  DType ddt = DType::bf16;   // dout
  bool causal = true;
};

std::string describe(const BwdCase& c) {
  return std::to_string(c.l.B) + "x" + std::to_string(c.l.T) + " S=" + std::to_string(c.l.S) +
         " Hq=" + std::to_string(c.Hq) + " Hkv=" + std::to_string(c.Hkv) + " D=" + std::to_string(c.D) +
         " qkv " + dtype_name(c.dt) + " o " + dtype_name(c.odt) + " dout " + dtype_name(c.ddt) +
         (c.causal ? " causal" : "") + (c.l.packed() ? " packed" : "") +
         (c.l.seqlens_q.empty() ? "" : " seqlens_q") + (c.l.seqlens_k.empty() ? "" : " seqlens_k");
}

// One backward (full, or sparse over idx) on the device, twice, against the reference.
// Tolerance: |got - want| <= tol (|want| + max(rms(want), rms of want's row of D)): the
// tensor-core kernels round P and dS to 16 bits for their products (tol 2e-2); the fp32 kernels
// do not (tol 1e-4). Rounding errs in proportion to the terms of a sum, which a row's rms
// follows where the tensor's does not: dv of key 2 of a causal sequence at q_pos 0 sums 392
// P dout terms of up to 1.5 (row rms 2.1, tensor rms 0.35) into -0.021, and the bf16 rounding
// of its P alone moves that to -0.031 (2.7% of the tensor's rms, 0.5% of the row's).
void check_backward_path(const BwdCase& c, uint64_t seed, const Pair* idx, double tol);

// Full backwards run on both flash kernel sets: warpgroup MMAs (where the GPU has them, D 64
// and 128) and mma.sync, each forced.
void check_backward(const BwdCase& c, uint64_t seed, const Pair* idx, double tol) {
  if (idx) return check_backward_path(c, seed, idx, tol);  // the sparse backward: one path
  for (const char* path : {"wgmma", "mma"}) {
    SCOPED_TRACE(std::string("TOPK_CUDA_FLASH_PATH=") + path);
    ScopedEnv env("TOPK_CUDA_FLASH_PATH", path);
    check_backward_path(c, seed, idx, tol);
  }
}

void check_backward_path(const BwdCase& c, uint64_t seed, const Pair* idx, double tol) {
  SCOPED_TRACE(describe(c));
  const Layout& l = c.l;
  Qkv in(l, c.Hq, c.Hkv, c.D, c.dt, c.dt, seed);
  Pair o(c.odt, {l.B, l.T, c.Hq, c.D}), lse(DType::f32, {l.B, l.T, c.Hq}), dout(c.ddt, {l.B, l.T, c.Hq, c.D});
  Rng rng(seed + 7);
  fill_random(dout.host, rng);
  nan_unowned(dout.host, l, false);
  const AttnOpts ro = opts(c.causal, Backend::ref), co = opts(c.causal, Backend::automatic);
  if (idx) sparse_attention_forward(in.q.host, in.k.host, in.v.host, idx->host, l.seqs(), ro, o.host, lse.host);
  else attention_forward(in.q.host, in.k.host, in.v.host, l.seqs(), ro, o.host, lse.host);
  nan_unowned(o.host, l, false);
  o.upload();
  lse.upload();
  dout.upload();
  Pair dq(DType::f32, {l.B, l.T, c.Hq, c.D}), dk(DType::f32, {l.B, l.S, c.Hkv, c.D}), dv(DType::f32, {l.B, l.S, c.Hkv, c.D});
  std::vector<unsigned char> first[3];
  for (int rep = 0; rep < 2; rep++) {
    poison(dq.dev);
    poison(dk.dev);
    poison(dv.dev);
    if (idx)
      sparse_attention_backward(in.q.dev, in.k.dev, in.v.dev, idx->dev, o.dev, lse.dev, dout.dev, l.seqs(), co,
                                dq.dev, dk.dev, dv.dev);
    else
      attention_backward(in.q.dev, in.k.dev, in.v.dev, o.dev, lse.dev, dout.dev, l.seqs(), co, dq.dev, dk.dev, dv.dev);
    const Pair* outs[3] = {&dq, &dk, &dv};
    for (int i = 0; i < 3; i++) {
      if (rep == 0) first[i] = outs[i]->bytes();
      else EXPECT_TRUE(first[i] == outs[i]->bytes()) << "gradient " << i << " differs between two runs";
    }
  }
  if (idx)
    sparse_attention_backward(in.q.host, in.k.host, in.v.host, idx->host, o.host, lse.host, dout.host, l.seqs(), ro,
                              dq.host, dk.host, dv.host);
  else
    attention_backward(in.q.host, in.k.host, in.v.host, o.host, lse.host, dout.host, l.seqs(), ro, dq.host, dk.host,
                       dv.host);
  const std::vector<char> qmask = l.owned(int64_t(c.Hq) * c.D);
  auto check = [&](const Pair& g, const std::vector<char>& mask, const char* what) {
    const std::vector<float> want = host_vals(g.host);
    const double scale = rms(want, mask);
    const std::vector<double> rows = row_rms(want, c.D);
    std::vector<double> atol(want.size());
    for (size_t i = 0; i < atol.size(); i++) atol[i] = tol * std::max(scale, rows[i / size_t(c.D)]) + 1e-6;
    expect_close(g.download(), want, atol, tol, what, mask);
  };
  check(dq, qmask, "dq");
  // dk, dv are overwritten whole: rows of no sequence are 0 in both.
  check(dk, {}, "dk");
  check(dv, {}, "dv");
}

Layout batched(int64_t B, int64_t T, int64_t S) {
  Layout l;
  l.B = B;
  l.T = T;
  l.S = S;
  return l;
}

}  // namespace

// Tensor cores: sizes around the 64-row stages and 128-key tiles of dK/dV and the 128-row tiles
// and 64-key tiles of dQ, every group size, head dims 64, 128 and 256, both 16-bit dtypes.
TEST(CudaBackward, FlashTileSizes) {
  NEED_GPU();
  uint64_t seed = 3000;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv] : {std::pair{4, 4}, {8, 2}, {16, 2}})
      for (int64_t T : {1, 63, 64, 65, 127, 128, 129})
        for (bool causal : {false, true}) {
          BwdCase c;
          c.l = batched(2, T, T == 1 ? 129 : T + (seed % 3 == 0 ? 64 : 0));
          c.Hq = Hq;
          c.Hkv = Hkv;
          c.D = D;
          c.causal = causal;
          c.dt = c.odt = c.ddt = (seed & 1) ? DType::f16 : DType::bf16;
          check_backward(c, seed++, nullptr, 2e-2);
          if (testing::Test::HasFailure()) return;
        }
}

// Every sequence form on the tensor cores and on the fp32 kernels: ragged seqlens_q and
// seqlens_k (an empty sequence, one with no keys: its dk, dv rows are 0), packed sequences
// (one with keys but no queries), more causal queries than keys (rows that see nothing).
TEST(CudaBackward, Layouts) {
  NEED_GPU();
  uint64_t seed = 3100;
  std::vector<Layout> ls;
  Layout rag = batched(4, 150, 300);
  rag.seqlens_q = {150, 1, 0, 77};
  rag.seqlens_k = {300, 40, 10, 0};
  ls.push_back(rag);
  Layout pk = batched(1, 331, 351);
  pk.cu_q = {0, 130, 130, 200, 331};
  pk.cu_k = {0, 130, 150, 220, 351};
  ls.push_back(pk);
  Layout over = batched(1, 200, 150);  // causal: the first 50 queries see no key
  ls.push_back(over);
  Layout qp = batched(2, 100, 300);
  qp.q_pos = {0, 150};
  ls.push_back(qp);
  for (const Layout& l : ls)
    for (bool causal : {false, true})
      for (DType dt : {DType::bf16, DType::f32}) {
        BwdCase c;
        c.l = l;
        c.causal = causal;
        c.D = (seed & 1) ? 128 : 64;
        c.dt = c.odt = c.ddt = dt;
        check_backward(c, seed++, nullptr, dt == DType::f32 ? 1e-4 : 2e-2);
        if (testing::Test::HasFailure()) return;
      }
}

// The fp32 kernels for what the tensor cores do not take: f32 inputs at every group size, head
// dims other than 64 and 128 (any dtype), mixed dtypes; and the tensor cores with an f32 dout
// (rounded to a 16-bit copy first) and an f32 o.
TEST(CudaBackward, OtherDtypesAndHeadDims) {
  NEED_GPU();
  uint64_t seed = 3200;
  for (auto [Hq, Hkv] : {std::pair{4, 4}, {8, 2}, {16, 2}})
    for (int D : {64, 128, 256}) {
      BwdCase c;
      c.l = batched(2, 65, 129);
      c.Hq = Hq;
      c.Hkv = Hkv;
      c.D = D;
      c.dt = c.odt = c.ddt = DType::f32;
      check_backward(c, seed++, nullptr, 1e-4);
    }
  for (int D : {8, 40, 96, 200}) {
    BwdCase c;
    c.l = batched(2, 33, 70);
    c.D = D;
    c.dt = (seed & 1) ? DType::bf16 : DType::f32;
    c.odt = c.ddt = DType::f32;
    check_backward(c, seed++, nullptr, 1e-4);
  }
  BwdCase mixed;  // bf16 q, f32 o and dout: the tensor cores with a rounded dout
  mixed.l = batched(2, 100, 100);
  mixed.odt = mixed.ddt = DType::f32;
  check_backward(mixed, seed++, nullptr, 2e-2);
  BwdCase f16;
  f16.l = batched(1, 129, 200);
  f16.dt = DType::f16;
  f16.odt = DType::f32;
  f16.ddt = DType::bf16;  // another 16-bit dtype than q: also copied
  f16.D = 128;
  check_backward(f16, seed++, nullptr, 2e-2);
}

// ---- sparse attention backward ----

namespace {

// Random indices [B, T, Hsel, K] with some invalid (< 0 and >= S_b), duplicates, one row with
// no valid index; over the keys of each row's sequence.
Pair random_indices(const Layout& l, int Hsel, int64_t K, uint64_t seed) {
  Pair idx(DType::i32, {l.B, l.T, Hsel, K});
  Rng rng(seed);
  int32_t* x = idx.host.ptr<int32_t>();
  for (int64_t i = 0; i < idx.host.numel(); i++) x[i] = -1;
  for (int64_t s = 0; s < l.nseq(); s++) {
    int64_t b, q0, nq, k0, nk;
    l.seq(s, b, q0, nq, k0, nk);
    for (int64_t t = 0; t < nq; t++)
      for (int64_t e = 0; e < Hsel * K; e++) {
        int32_t j = int32_t(rng.below(uint64_t(nk + 12))) - 6;  // some < 0, some >= S_b
        if (e % 9 == 4 && nk > 0) j = int32_t(nk / 2);           // duplicates
        x[((b * l.T + q0 + t) * Hsel) * K + e] = j;
      }
    // Every third row's lists end early, as a forward's do (its budget, then -1 up to K):
    // tails of every length from K (nothing valid) to 0.
    for (int64_t t = 1; t < nq; t += 3)
      for (int64_t h = 0; h < Hsel; h++)
        for (int64_t e = (t * 7 + h * 3) % (K + 1); e < K; e++) x[((b * l.T + q0 + t) * Hsel + h) * K + e] = -1;
  }
  for (int64_t e = 0; e < K; e++) x[e] = -1;  // row 0, list 0: nothing valid
  idx.upload();
  return idx;
}

}  // namespace

TEST(CudaSparseBackward, MatchesReference) {
  NEED_GPU();
  uint64_t seed = 3300;
  for (int D : {64, 128, 256})
    for (auto [Hq, Hkv] : {std::pair{4, 4}, {8, 2}, {16, 2}})
      for (bool shared : {false, true}) {
        BwdCase c;
        c.l = batched(3, 17, 200);
        c.l.seqlens_k = {200, 31, 0};
        c.l.seqlens_q = {17, 5, 9};
        c.Hq = Hq;
        c.Hkv = Hkv;
        c.D = D;
        c.dt = (seed & 1) ? DType::f32 : DType::bf16;
        c.odt = c.ddt = (seed & 2) ? DType::bf16 : DType::f32;
        const int Hsel = shared ? Hkv : Hq;
        Pair idx = random_indices(c.l, Hsel, 65, seed + 50);
        SCOPED_TRACE(testing::Message() << "Hsel=" << Hsel);
        check_backward(c, seed++, &idx, 1e-4);
        if (testing::Test::HasFailure()) return;
      }
  // Packed sequences (one with keys but no queries).
  BwdCase pk;
  pk.l = batched(1, 90, 120);
  pk.l.cu_q = {0, 40, 40, 90};
  pk.l.cu_k = {0, 50, 60, 120};
  pk.Hq = 8;
  pk.Hkv = 2;
  Pair idx = random_indices(pk.l, 8, 40, 3399);
  check_backward(pk, 3398, &idx, 1e-4);
}

// Row ranges (a small budget: a few rows per range, each adding to dk and dv) and keys that
// nearly every entry lists (runs far longer than one thread group's piece): still the
// reference, and still bit-identical between two runs.
TEST(CudaSparseBackward, RowRangesAndHotKeys) {
  NEED_GPU();
  BwdCase c;
  c.l = batched(2, 60, 300);
  c.l.seqlens_k = {300, 120};
  c.causal = false;
  uint64_t seed = 3500;
  for (int Hsel : {c.Hq, c.Hkv})
    for (const char* budget : {"", "20000"}) {
      SCOPED_TRACE(testing::Message() << "Hsel=" << Hsel << " budget " << (*budget ? budget : "default"));
      std::unique_ptr<ScopedEnv> env;
      if (*budget) env = std::make_unique<ScopedEnv>("TOPK_CUDA_WORKSPACE_BUDGET", budget);
      Pair idx = random_indices(c.l, Hsel, 100, seed + 1);
      int32_t* x = idx.host.ptr<int32_t>();
      for (int64_t e = 0; e < idx.host.numel(); e++)  // keys 0 and 1: hot, a thousand entries each
        if (e % 5 == 0 && x[e] >= 0) x[e] = int32_t(e / 5 % 2);
      idx.upload();
      check_backward(c, seed, &idx, 1e-4);
      seed += 2;
      if (testing::Test::HasFailure()) return;
    }
}
