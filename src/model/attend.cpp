#include "model/attend.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/params.h"
#include "core/rng.h"
#include "model/selectors.h"
#include "model/views.h"
#include "topk/approx.h"

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

// The `w` best of the n scores of a row (score order, ties: lower index), written ascending.
void best_keys(const float* row, int64_t n, int64_t w, std::vector<int32_t>& ix, int32_t* dst) {
  ix.resize(size_t(n));
  for (int64_t j = 0; j < n; j++) ix[size_t(j)] = int32_t(j);
  auto better = [row](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  };
  std::partial_sort(ix.begin(), ix.begin() + w, ix.end(), better);
  std::copy_n(ix.begin(), w, dst);
  std::sort(dst, dst + w);
}

// The exact top-W reference of a policy: its budget rule without forced keys or sharing, so
// that each row's W equals the number of keys the policy attends to.
SelectOpts exact_opts(const AttnPolicy& pol) {
  SelectOpts s;
  if (pol.kind == PolicyKind::quest || pol.kind == PolicyKind::qkeys) return reference_budget(pol);
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
      // The oracle's budget is its exact top-W, not its count; the adaptive budget's is the
      // mean over heads (the uniform W it spreads).
      budget[size_t(b)] = pol.kind == PolicyKind::oracle
                              ? select_budget(exact_opts(pol), seqlens_k[size_t(b)])
                              : W;
      if (pol.adapt == BudgetAdapt::entropy) {
        int64_t tot = 0;
        for (int64_t j = 0; j < Hq * K; j++) tot += approx[size_t(b * Hq * K + j)] >= 0;
        budget[size_t(b)] = (tot + Hq / 2) / Hq;
      }
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
    std::vector<int32_t> exact;
    int64_t kx = Kx;
    if (pol.adapt == BudgetAdapt::entropy) {
      // Each head's reference is its own exact top-W_h, W_h = the keys its row holds.
      kx = K;
      exact.assign(size_t(B * Hq * K), -1);
      std::vector<float> hs = to_host_f32(vs);
      std::vector<int32_t> ix;
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++) {
          const int32_t* row = approx.data() + (b * Hq + h) * K;
          const int64_t w = std::count_if(row, row + K, [](int32_t j) { return j >= 0; });
          best_keys(hs.data() + (b * Hq + h) * S, seqlens_k[size_t(b)], w, ix,
                    exact.data() + (b * Hq + h) * K);
        }
    } else {
      TensorView vx = scratch(sc.idx, DType::i32, {B, 1, Hq, Kx}, dev);
      topk_select(vs, seqs, opts, ex, vx);
      exact = to_host_i32(vx);
    }
    TensorView hp = make_view(prec.data(), DType::f32, {B, 1, Hq});
    retrieval_precision(make_view(approx.data(), DType::i32, {B, 1, Hq, K}),
                        make_view(exact.data(), DType::i32, {B, 1, Hq, kx}), hp);
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

std::vector<int64_t> entropy_budgets(std::span<const double> entropy, int64_t W, int64_t n) {
  const int64_t H = int64_t(entropy.size());
  TOPK_CHECK(H > 0 && n >= 1 && W >= 1 && W <= n, "entropy_budgets: need heads, 1 <= W <= n; got "
             "%lld heads, W = %lld, n = %lld", (long long)H, (long long)W, (long long)n);
  std::vector<int64_t> b(size_t(H), 1);
  const double cap = double(n - 1);  // keys a head may take beyond its first
  std::vector<double> share(size_t(H), 0.0);
  std::vector<bool> capped(size_t(H), false);
  double left = double(H) * double(W - 1);
  // Water-filling: share `left` by entropy among the uncapped heads; heads whose share passes
  // the cap take the cap and leave the pool; repeat until no share passes it.
  for (;;) {
    double sum = 0;
    int64_t open = 0;
    for (int64_t h = 0; h < H; h++)
      if (!capped[size_t(h)]) sum += std::max(0.0, entropy[size_t(h)]), open++;
    if (open == 0) break;
    bool again = false;
    for (int64_t h = 0; h < H; h++) {
      if (capped[size_t(h)]) continue;
      const double e = std::max(0.0, entropy[size_t(h)]);
      share[size_t(h)] = sum > 0 ? left * e / sum : left / double(open);
    }
    for (int64_t h = 0; h < H; h++)
      if (!capped[size_t(h)] && share[size_t(h)] > cap) {
        capped[size_t(h)] = true;
        share[size_t(h)] = cap;
        left -= cap;
        again = true;
      }
    if (!again) break;
  }
  int64_t given = 0;
  std::vector<std::pair<double, int64_t>> frac;
  for (int64_t h = 0; h < H; h++) {
    const double f = std::floor(share[size_t(h)] + 1e-9);
    b[size_t(h)] += int64_t(f);
    given += int64_t(f);
    if (b[size_t(h)] < n) frac.push_back({share[size_t(h)] - f, h});
  }
  int64_t rest = H * (W - 1) - given;
  std::stable_sort(frac.begin(), frac.end(),
                   [](const auto& a, const auto& c) { return a.first > c.first; });
  for (size_t i = 0; rest > 0 && !frac.empty(); i = (i + 1) % frac.size()) {
    const int64_t h = frac[i].second;
    if (b[size_t(h)] < n) b[size_t(h)]++, rest--;
  }
  return b;
}

double softmax_entropy(const float* scores, int64_t n) {
  if (n <= 1) return 0.0;
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; j++) mx = std::max(mx, double(scores[j]));
  double z = 0, zs = 0;
  for (int64_t j = 0; j < n; j++) {
    const double e = std::exp(double(scores[j]) - mx);
    z += e;
    zs += e * (double(scores[j]) - mx);
  }
  return std::max(0.0, std::log(z) - zs / z);  // H = ln Z - E[s - max]
}

void adaptive_select(const TensorView& scores, std::span<const int32_t> seqlens_q,
                     std::span<const int32_t> seqlens_k, const SelectOpts& sel,
                     const TensorView& out) {
  const int64_t B = scores.shape[0], T = scores.shape[1], Hq = scores.shape[2],
                S = scores.shape[3], K = out.shape[3];
  const float* sc = scores.ptr<float>();
  int32_t* o = out.ptr<int32_t>();
  std::fill(o, o + out.numel(), -1);
  std::vector<double> ent(static_cast<size_t>(Hq));
  std::vector<int32_t> ix;
  for (int64_t b = 0; b < B; b++) {
    const int64_t tb = seqlens_q[size_t(b)], q_pos = seqlens_k[size_t(b)] - tb;
    for (int64_t t = 0; t < tb; t++) {
      const int64_t n = q_pos + t + 1;
      const float* rows = sc + (b * T + t) * Hq * S;
      for (int64_t h = 0; h < Hq; h++) ent[size_t(h)] = softmax_entropy(rows + h * S, n);
      const int64_t W = std::min<int64_t>(select_budget(sel, n), n);
      const std::vector<int64_t> wb = entropy_budgets(ent, W, n);
      for (int64_t h = 0; h < Hq; h++) {
        TOPK_ASSERT(wb[size_t(h)] <= K);
        best_keys(rows + h * S, n, wb[size_t(h)], ix, o + ((b * T + t) * Hq + h) * K);
      }
    }
  }
}

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
                      const TensorView& lse, std::vector<std::vector<AttnStats>>* stats,
                      const IndexerInput* ix) {
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
  AttnPolicy resolved = pol;  // the budget its statistics compare with
  switch (pol.kind) {
    case PolicyKind::indexer: {
      TOPK_CHECK(ix, "policy_attention: the indexer policy needs the indexer's inputs (a model "
                 "with an indexer)");
      resolved.sel = ix->sel;
      const int64_t K = select_capacity(ix->sel, smax);
      idx = scratch(sc.idx, DType::i32, {B, T, Hkv, K}, dev);
      indexer_attention_forward(q, k, v, ix->q, ix->w, ix->k, ix->k_scale, seqs, opts, ix->sel, o,
                                lse, idx);
      break;
    }
    case PolicyKind::quest:
      idx = quest_select(pol, q, k, seqlens_q, seqlens_k);
      sparse_attention_forward(q, k, v, idx, seqs, opts, o, lse);
      break;
    case PolicyKind::qkeys:
      idx = qkeys_select(pol, q, k, seqlens_q, seqlens_k);
      sparse_attention_forward(q, k, v, idx, seqs, opts, o, lse);
      break;
    case PolicyKind::full:
      attention_forward(q, k, v, seqs, opts, o, lse);
      break;
    case PolicyKind::topk: {
      if (pol.adapt == BudgetAdapt::entropy) {
        // Scores of every row, entropy per head, per-head budgets, exact top-W_h per head.
        const int64_t K = std::max<int64_t>(1, std::min<int64_t>(
                                                   Hq * select_budget(pol.sel, smax), smax));
        TensorView vs = scratch(sc.scores, DType::f32, {B, T, Hq, S}, dev);
        attention_scores(q, k, seqs, opts, vs);
        std::vector<float> hs = to_host_f32(vs);
        std::vector<int32_t> h(size_t(B * T * Hq * K), -1);
        adaptive_select(make_view(hs.data(), DType::f32, {B, T, Hq, S}), seqlens_q, seqlens_k,
                        pol.sel, make_view(h.data(), DType::i32, {B, T, Hq, K}));
        idx = scratch(sc.idx, DType::i32, {B, T, Hq, K}, dev);
        to_device(idx, h);
        sparse_attention_forward(q, k, v, idx, seqs, opts, o, lse);
        break;
      }
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
    fill_stats(resolved, layer, q, k, seqlens_k, idx, *stats);
  }
}

}  // namespace topk
