#include "model/attend.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/params.h"
#include "core/rng.h"
#include "model/views.h"

namespace topk {

namespace {

// Device scratch reused across calls (one set per host thread: the CPU eval runs examples in
// parallel).
struct Scratch {
  Buffer idx, idx2, scores, ent, entn, mass;
};
Scratch& scratch_of() {
  thread_local Scratch s;
  return s;
}

std::vector<int32_t> to_host_i32(const TensorView& t) {
  std::vector<int32_t> h(size_t(t.numel()));
  if (!h.empty()) copy(make_view(h.data(), DType::i32, {t.numel()}), reshape(t, {t.numel()}));
  return h;
}
std::vector<float> to_host_f32(const TensorView& t) {
  std::vector<float> h(size_t(t.numel()));
  if (!h.empty()) copy(make_view(h.data(), DType::f32, {t.numel()}), reshape(t, {t.numel()}));
  return h;
}
void to_device(const TensorView& dst, const std::vector<int32_t>& h) {
  copy(reshape(dst, {dst.numel()}), make_view(const_cast<int32_t*>(h.data()), DType::i32,
                                              {dst.numel()}));
}

int64_t longest(std::span<const int32_t> s) {
  int64_t m = 0;
  for (int32_t x : s) m = std::max<int64_t>(m, x);
  return m;
}

// The exact top-W reference of a policy: its budget rule without forced keys or sharing, so
// that each row's W equals the number of keys the policy attends to.
SelectOpts exact_opts(const AttnPolicy& pol) {
  SelectOpts s;
  if (pol.kind == PolicyKind::window) {
    s.k = pol.sel.sink + pol.sel.window;
  } else {
    s.k = pol.sel.k;
    s.ratio = pol.sel.ratio;
    s.min_k = pol.sel.min_k;
  }
  return s;
}

// Statistics of the last (only) query row of each sequence. idx: the policy's selection
// [B, 1, Hsel, K] on the device (empty view for full attention).
void fill_stats(const AttnPolicy& pol, int layer, const TensorView& q, const TensorView& k,
                std::span<const int32_t> seqlens_k, const TensorView& idx,
                std::vector<std::vector<AttnStats>>& stats) {
  const int64_t B = q.shape[0], Hq = q.shape[2], S = k.shape[1];
  const Device dev = q.device;
  Scratch& sc = scratch_of();
  Seqs seqs;
  seqs.seqlens_k = seqlens_k;
  AttnOpts opts;
  opts.causal = true;
  TensorView ve = scratch(sc.ent, DType::f32, {B, 1, Hq}, dev);
  TensorView vn = scratch(sc.entn, DType::f32, {B, 1, Hq}, dev);
  attention_entropy(q, k, seqs, opts, ve, vn);
  std::vector<float> ent = to_host_f32(ve), entn = to_host_f32(vn);
  std::vector<float> mass(size_t(B * Hq), 1.0f), prec(size_t(B * Hq), std::nanf(""));
  std::vector<int64_t> budget(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; b++) budget[size_t(b)] = seqlens_k[size_t(b)];
  if (pol.kind != PolicyKind::full) {
    // The policy's row per query head (a shared row serves each head of its group).
    const int64_t hsel = idx.shape[2], K = idx.shape[3], G = Hq / hsel;
    std::vector<int32_t> sel = to_host_i32(idx), approx(size_t(B * Hq * K));
    for (int64_t b = 0; b < B; b++) {
      int64_t W = 0;
      for (int64_t h = 0; h < Hq; h++) {
        const int32_t* row = sel.data() + (b * hsel + h / G) * K;
        std::copy_n(row, K, approx.begin() + (b * Hq + h) * K);
        W = std::max<int64_t>(W, std::count_if(row, row + K, [](int32_t j) { return j >= 0; }));
      }
      // The oracle's budget is its exact top-W, not its count.
      budget[size_t(b)] = pol.kind == PolicyKind::oracle
                              ? select_budget(exact_opts(pol), seqlens_k[size_t(b)])
                              : W;
    }
    TensorView va = scratch(sc.idx2, DType::i32, {B, 1, Hq, K}, dev);
    to_device(va, approx);
    TensorView vm = scratch(sc.mass, DType::f32, {B, 1, Hq}, dev);
    selection_mass(q, k, va, seqs, opts, vm);
    mass = to_host_f32(vm);
    const SelectOpts ex = exact_opts(pol);
    const int64_t Kx = select_capacity(ex, S);
    TensorView vs = scratch(sc.scores, DType::f32, {B, 1, Hq, S}, dev);
    attention_scores(q, k, seqs, opts, vs);
    TensorView vx = scratch(sc.idx, DType::i32, {B, 1, Hq, Kx}, dev);
    topk_select(vs, seqs, opts, ex, vx);
    std::vector<int32_t> exact = to_host_i32(vx);
    TensorView hp = make_view(prec.data(), DType::f32, {B, 1, Hq});
    retrieval_precision(make_view(approx.data(), DType::i32, {B, 1, Hq, K}),
                        make_view(exact.data(), DType::i32, {B, 1, Hq, Kx}), hp);
  }
  if (int64_t(stats.size()) < B) stats.resize(size_t(B));
  for (int64_t b = 0; b < B; b++) {
    if (int64_t(stats[size_t(b)].size()) <= layer) stats[size_t(b)].resize(size_t(layer) + 1);
    AttnStats& st = stats[size_t(b)][size_t(layer)];
    st.visible = seqlens_k[size_t(b)];
    st.budget = budget[size_t(b)];
    auto part = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + b * Hq, v.begin() + (b + 1) * Hq);
    };
    st.precision = part(prec);
    st.mass = part(mass);
    st.entropy = part(ent);
    st.entropy_norm = part(entn);
  }
}

}  // namespace

void window_indices(int64_t q_pos, int sink, int w, const TensorView& out) {
  const int64_t T = out.shape[1], H = out.shape[2], K = out.shape[3];
  int32_t* p = out.ptr<int32_t>();
  for (int64_t t = 0; t < T; t++) {
    const int64_t n = q_pos + t + 1;
    int32_t* row = p + t * H * K;
    int64_t c = 0;
    for (int64_t j = 0; j < std::min<int64_t>(sink, n); j++) row[c++] = int32_t(j);
    for (int64_t j = std::max<int64_t>(sink, n - w); j < n; j++) row[c++] = int32_t(j);
    TOPK_ASSERT(c <= K);
    std::fill(row + c, row + K, -1);
    for (int64_t h = 1; h < H; h++) std::copy_n(row, K, row + h * K);
  }
}

void oracle_mix(const TensorView& exact, int64_t q_pos, double precision, uint64_t seed, int layer,
                const TensorView& out) {
  const int64_t T = exact.shape[1], H = exact.shape[2], K = exact.shape[3];
  const int32_t* in = exact.ptr<int32_t>();
  int32_t* o = out.ptr<int32_t>();
  std::vector<int32_t> top, rest;
  std::vector<uint8_t> is_top;
  for (int64_t t = 0; t < T; t++) {
    const int64_t n = q_pos + t + 1;
    for (int64_t h = 0; h < H; h++) {
      const int32_t* row = in + (t * H + h) * K;
      int32_t* dst = o + (t * H + h) * K;
      top.clear();
      for (int64_t i = 0; i < K; i++)
        if (row[i] >= 0) top.push_back(row[i]);
      const int64_t W = int64_t(top.size());
      const int64_t keep = std::min<int64_t>(W, std::llround(precision * double(W)));
      Rng rng(seed ^ (uint64_t(layer) << 48) ^ (uint64_t(h) << 32) ^ uint64_t(n) * 0x9E3779B97F4A7C15ull);
      for (int64_t i = 0; i < keep; i++)  // a random subset of the exact top-W
        std::swap(top[size_t(i)], top[size_t(i) + rng.below(uint64_t(W - i))]);
      is_top.assign(size_t(n), 0);
      for (int32_t j : top) is_top[size_t(j)] = 1;
      rest.clear();
      for (int64_t j = 0; j < n; j++)
        if (!is_top[size_t(j)]) rest.push_back(int32_t(j));
      const int64_t fill = std::min<int64_t>(W - keep, int64_t(rest.size()));
      for (int64_t i = 0; i < fill; i++)
        std::swap(rest[size_t(i)], rest[size_t(i) + rng.below(uint64_t(rest.size()) - uint64_t(i))]);
      int64_t c = 0;
      for (int64_t i = 0; i < keep; i++) dst[c++] = top[size_t(i)];
      for (int64_t i = 0; i < fill; i++) dst[c++] = rest[size_t(i)];
      std::sort(dst, dst + c);
      std::fill(dst + c, dst + K, -1);
    }
  }
}

void policy_attention(const AttnPolicy& pol, int layer, const TensorView& q, const TensorView& k,
                      const TensorView& v, std::span<const int32_t> seqlens_q,
                      std::span<const int32_t> seqlens_k, const TensorView& o,
                      const TensorView& lse, std::vector<std::vector<AttnStats>>* stats) {
  const int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], S = k.shape[1], Hkv = k.shape[2];
  const Device dev = q.device;
  Scratch& sc = scratch_of();
  Seqs seqs;
  seqs.seqlens_k = seqlens_k;
  seqs.seqlens_q = seqlens_q;
  AttnOpts opts;
  opts.causal = true;
  const int64_t smax = longest(seqlens_k);
  int64_t hsel = pol.sel.share_group ? Hkv : Hq;
  TensorView idx;
  switch (pol.kind) {
    case PolicyKind::full:
      attention_forward(q, k, v, seqs, opts, o, lse);
      break;
    case PolicyKind::topk: {
      const int64_t K = select_capacity(pol.sel, smax);
      idx = scratch(sc.idx, DType::i32, {B, T, hsel, K}, dev);
      topk_attention_forward(q, k, v, seqs, opts, pol.sel, o, lse, idx);
      break;
    }
    case PolicyKind::window: {
      hsel = Hkv;
      const int64_t K = std::max<int64_t>(1, std::min<int64_t>(int64_t(pol.sel.sink) + pol.sel.window, smax));
      std::vector<int32_t> h(size_t(B * T * hsel * K), -1);
      for (int64_t b = 0; b < B; b++) {
        const int64_t tb = seqlens_q[size_t(b)];
        if (tb == 0) continue;
        window_indices(seqlens_k[size_t(b)] - tb, pol.sel.sink, pol.sel.window,
                       make_view(h.data() + b * T * hsel * K, DType::i32, {1, tb, hsel, K}));
      }
      idx = scratch(sc.idx, DType::i32, {B, T, hsel, K}, dev);
      to_device(idx, h);
      sparse_attention_forward(q, k, v, idx, seqs, opts, o, lse);
      break;
    }
    case PolicyKind::oracle: {
      const int64_t K = select_capacity(pol.sel, smax);
      TensorView vs = scratch(sc.scores, DType::f32, {B, T, Hq, S}, dev);
      attention_scores(q, k, seqs, opts, vs);
      TensorView vx = scratch(sc.idx2, DType::i32, {B, T, hsel, K}, dev);
      topk_select(vs, seqs, opts, pol.sel, vx);
      std::vector<int32_t> exact = to_host_i32(vx), mixed(exact.size(), -1);
      for (int64_t b = 0; b < B; b++) {
        const int64_t tb = seqlens_q[size_t(b)];
        if (tb == 0) continue;
        const int64_t off = b * T * hsel * K;
        oracle_mix(make_view(exact.data() + off, DType::i32, {1, tb, hsel, K}),
                   seqlens_k[size_t(b)] - tb, pol.precision, pol.seed, layer,
                   make_view(mixed.data() + off, DType::i32, {1, tb, hsel, K}));
      }
      idx = scratch(sc.idx, DType::i32, {B, T, hsel, K}, dev);
      to_device(idx, mixed);
      sparse_attention_forward(q, k, v, idx, seqs, opts, o, lse);
      break;
    }
  }
  if (stats) {
    TOPK_CHECK(T == 1, "policy_attention: statistics are recorded for decode steps (one query per "
               "sequence), got %lld", (long long)T);
    fill_stats(pol, layer, q, k, seqlens_k, idx, *stats);
  }
}

}  // namespace topk
