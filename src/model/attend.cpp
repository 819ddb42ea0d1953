#include "model/attend.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/rng.h"

namespace topk {

namespace {

// Row t of a [1, T, H, D] view as a [1, 1, H, D] view.
TensorView row_view(const TensorView& x, int64_t t) {
  TensorView r = x;
  r.data = static_cast<char*>(x.data) + size_t(t * x.stride[1]) * dtype_size(x.dtype);
  r.shape[1] = 1;
  return r;
}

int64_t valid_count(const int32_t* row, int64_t K) {
  int64_t c = 0;
  for (int64_t i = 0; i < K; i++) c += row[i] >= 0;
  return c;
}

void fill_stats(const AttnPolicy& pol, const TensorView& q, const TensorView& k,
                const std::vector<int32_t>& idx, int64_t hsel, int64_t K, AttnStats& st) {
  const int64_t T = q.shape[1], Hq = q.shape[2], S = k.shape[1];
  TensorView ql = row_view(q, T - 1);  // default position S - 1: sees all S keys
  AttnOpts opts;
  opts.causal = true;
  st.visible = S;
  st.precision.assign(size_t(Hq), std::numeric_limits<float>::quiet_NaN());
  st.mass.assign(size_t(Hq), 1.0f);
  st.entropy.assign(size_t(Hq), 0.0f);
  st.entropy_norm.assign(size_t(Hq), 0.0f);
  TensorView ve = make_view(st.entropy.data(), DType::f32, {1, 1, Hq});
  TensorView vn = make_view(st.entropy_norm.data(), DType::f32, {1, 1, Hq});
  attention_entropy(ql, k, Seqs{}, opts, ve, vn);
  if (pol.kind == PolicyKind::full) {
    st.budget = S;
    return;
  }
  // The policy's last row, one row per query head (a shared row serves each head of its group).
  const int64_t G = Hq / hsel;
  std::vector<int32_t> approx(size_t(Hq * K));
  const int32_t* last = idx.data() + size_t((T - 1) * hsel * K);
  int64_t W = 0;
  for (int64_t h = 0; h < Hq; h++) {
    std::copy_n(last + (h / G) * K, K, approx.begin() + h * K);
    W = std::max(W, valid_count(last + (h / G) * K, K));
  }
  if (pol.kind == PolicyKind::oracle) {  // the oracle's budget is its exact top-W, not its count
    SelectOpts s = pol.sel;
    s.share_group = false;
    s.sink = s.window = 0;
    W = select_capacity(s, S);
  }
  st.budget = W;
  TensorView va = make_view(approx.data(), DType::i32, {1, 1, Hq, K});
  TensorView vm = make_view(st.mass.data(), DType::f32, {1, 1, Hq});
  selection_mass(ql, k, va, Seqs{}, opts, vm);
  if (W == 0) return;
  std::vector<float> scores(size_t(Hq * S));
  std::vector<int32_t> exact(size_t(Hq * W), -1);
  TensorView vs = make_view(scores.data(), DType::f32, {1, 1, Hq, S});
  TensorView vx = make_view(exact.data(), DType::i32, {1, 1, Hq, W});
  attention_scores(ql, k, Seqs{}, opts, vs);
  SelectOpts ref;
  ref.k = int(W);
  topk_select(vs, Seqs{}, opts, ref, vx);
  TensorView vp = make_view(st.precision.data(), DType::f32, {1, 1, Hq});
  retrieval_precision(va, vx, vp);
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
                      const TensorView& v, const TensorView& o, const TensorView& lse,
                      AttnStats* stats) {
  const int64_t T = q.shape[1], Hq = q.shape[2], S = k.shape[1], Hkv = k.shape[2];
  AttnOpts opts;
  opts.causal = true;  // query t sits at position S - T + t
  std::vector<int32_t> idx;
  int64_t hsel = pol.sel.share_group ? Hkv : Hq, K = 0;
  switch (pol.kind) {
    case PolicyKind::full:
      attention_forward(q, k, v, Seqs{}, opts, o, lse);
      break;
    case PolicyKind::topk: {
      K = select_capacity(pol.sel, S);
      idx.assign(size_t(T * hsel * K), -1);
      TensorView vi = make_view(idx.data(), DType::i32, {1, T, hsel, K});
      topk_attention_forward(q, k, v, Seqs{}, opts, pol.sel, o, lse, vi);
      break;
    }
    case PolicyKind::window: {
      hsel = Hkv;
      K = std::min<int64_t>(int64_t(pol.sel.sink) + pol.sel.window, S);
      idx.assign(size_t(T * hsel * K), -1);
      TensorView vi = make_view(idx.data(), DType::i32, {1, T, hsel, K});
      window_indices(S - T, pol.sel.sink, pol.sel.window, vi);
      sparse_attention_forward(q, k, v, vi, Seqs{}, opts, o, lse);
      break;
    }
    case PolicyKind::oracle: {
      K = select_capacity(pol.sel, S);
      std::vector<float> scores(size_t(T * Hq * S));
      std::vector<int32_t> exact(size_t(T * hsel * K), -1);
      TensorView vs = make_view(scores.data(), DType::f32, {1, T, Hq, S});
      TensorView vx = make_view(exact.data(), DType::i32, {1, T, hsel, K});
      attention_scores(q, k, Seqs{}, opts, vs);
      topk_select(vs, Seqs{}, opts, pol.sel, vx);
      idx.assign(exact.size(), -1);
      TensorView vi = make_view(idx.data(), DType::i32, {1, T, hsel, K});
      oracle_mix(vx, S - T, pol.precision, pol.seed, layer, vi);
      sparse_attention_forward(q, k, v, vi, Seqs{}, opts, o, lse);
      break;
    }
  }
  if (stats) fill_stats(pol, q, k, idx, hsel, K, *stats);
}

}  // namespace topk
