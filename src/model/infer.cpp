#include "model/infer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/rng.h"
#include "model/attend.h"
#include "model/blas_ops.h"
#include "topk/attention.h"

namespace topk {

KVCache kv_cache_create(const ModelConfig& c, int max_len) {
  TOPK_CHECK(max_len > 0, "kv_cache_create: max_len must be positive, got %d", max_len);
  KVCache kc;
  kc.max_len = max_len;
  size_t n = size_t(max_len) * c.kv_dim();
  kc.k.assign(size_t(c.layers), std::vector<float>(n));
  kc.v.assign(size_t(c.layers), std::vector<float>(n));
  return kc;
}

void model_step(const Model& m, KVCache& kc, const int* tokens, int T, const AttnPolicy& pol,
                std::vector<float>& logits, bool last_only, std::vector<AttnStats>* stats) {
  const ModelConfig& c = m.cfg;
  const int H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim, I = c.inter, V = c.vocab;
  TOPK_CHECK(T > 0, "model_step: no tokens");
  TOPK_CHECK(kc.len + T <= kc.max_len, "model_step: %d cached + %d new tokens exceed the cache "
             "size %d", kc.len, T, kc.max_len);
  TOPK_CHECK(int(kc.k.size()) == c.layers, "model_step: cache has %zu layers, model %d",
             kc.k.size(), c.layers);
  std::vector<float> inv = rope_inv_freq(c);
  std::vector<int> pos(static_cast<size_t>(T));
  for (int t = 0; t < T; t++) {
    pos[size_t(t)] = kc.len + t;
    TOPK_CHECK(tokens[t] >= 0 && tokens[t] < V, "model_step: token id %d outside [0, %d)",
               tokens[t], V);
  }
  const int S = kc.len + T;
  std::vector<float> h(size_t(T) * H), xn(size_t(T) * H), rs(size_t(T) * c.heads), q(size_t(T) * Q),
      tmp(size_t(T) * std::max(Q, KV)), o(size_t(T) * Q), lse(size_t(T) * c.heads),
      gate(size_t(T) * I), up(size_t(T) * I), y(size_t(T) * H);
  for (int t = 0; t < T; t++)
    std::memcpy(&h[size_t(t) * H], m.at(m.embed) + size_t(tokens[t]) * H, sizeof(float) * H);
  if (stats) stats->resize(size_t(c.layers));
  for (int l = 0; l < c.layers; l++) {
    const LayerParams& p = m.layer[size_t(l)];
    float* kc_l = kc.k[size_t(l)].data() + size_t(kc.len) * KV;
    float* vc_l = kc.v[size_t(l)].data() + size_t(kc.len) * KV;
    rmsnorm_fwd(h.data(), m.at(p.in_norm), xn.data(), rs.data(), T, H, c.rms_eps);
    linear_fwd(xn.data(), m.at(p.v), m.at(p.v_b), vc_l, T, H, KV);
    if (c.qk_norm()) {
      linear_fwd(xn.data(), m.at(p.q), m.at(p.q_b), tmp.data(), T, H, Q);
      rmsnorm_fwd(tmp.data(), m.at(p.q_norm), q.data(), rs.data(), T * c.heads, D, c.rms_eps);
      linear_fwd(xn.data(), m.at(p.k), m.at(p.k_b), tmp.data(), T, H, KV);
      rmsnorm_fwd(tmp.data(), m.at(p.k_norm), kc_l, rs.data(), T * c.kv_heads, D, c.rms_eps);
    } else {
      linear_fwd(xn.data(), m.at(p.q), m.at(p.q_b), q.data(), T, H, Q);
      linear_fwd(xn.data(), m.at(p.k), m.at(p.k_b), kc_l, T, H, KV);
    }
    rope_apply(q.data(), pos.data(), T, c.heads, D, inv.data(), false);
    rope_apply(kc_l, pos.data(), T, c.kv_heads, D, inv.data(), false);
    TensorView vq = make_view(q.data(), DType::f32, {1, T, c.heads, D});
    TensorView vk = make_view(kc.k[size_t(l)].data(), DType::f32, {1, S, c.kv_heads, D});
    TensorView vv = make_view(kc.v[size_t(l)].data(), DType::f32, {1, S, c.kv_heads, D});
    TensorView vo = make_view(o.data(), DType::f32, {1, T, c.heads, D});
    TensorView vl = make_view(lse.data(), DType::f32, {1, T, c.heads});
    policy_attention(pol, l, vq, vk, vv, vo, vl, stats ? &(*stats)[size_t(l)] : nullptr);
    linear_fwd(o.data(), m.at(p.o), m.at(p.o_b), y.data(), T, Q, H);
    for (size_t i = 0; i < h.size(); i++) h[i] += y[i];
    rmsnorm_fwd(h.data(), m.at(p.post_norm), xn.data(), rs.data(), T, H, c.rms_eps);
    linear_fwd(xn.data(), m.at(p.gate), nullptr, gate.data(), T, H, I);
    linear_fwd(xn.data(), m.at(p.up), nullptr, up.data(), T, H, I);
    for (size_t i = 0; i < gate.size(); i++) gate[i] = silu(gate[i]) * up[i];
    linear_fwd(gate.data(), m.at(p.down), nullptr, y.data(), T, I, H);
    for (size_t i = 0; i < h.size(); i++) h[i] += y[i];
  }
  kc.len = S;
  int first = last_only ? T - 1 : 0, rows = T - first;
  rmsnorm_fwd(h.data() + size_t(first) * H, m.at(m.final_norm), xn.data(), rs.data(), rows, H,
              c.rms_eps);
  logits.resize(size_t(rows) * V);
  linear_fwd(xn.data(), m.at(m.lm_head), nullptr, logits.data(), rows, H, V);
}

Sampler sampler_create(const SampleOpts& o) {
  return Sampler{o, Rng(o.seed)};
}

int sample(Sampler& s, const float* logits, int V) {
  if (s.o.temperature <= 0) return int(std::max_element(logits, logits + V) - logits);
  std::vector<int> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  int k = s.o.top_k > 0 && s.o.top_k < V ? s.o.top_k : V;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<double> p(static_cast<size_t>(k));
  double mx = logits[ids[0]], sum = 0;
  for (int i = 0; i < k; i++) sum += p[size_t(i)] = std::exp((logits[ids[size_t(i)]] - mx) / s.o.temperature);
  double u = s.rng.uniform() * sum;
  for (int i = 0; i < k; i++) {
    u -= p[size_t(i)];
    if (u <= 0) return ids[size_t(i)];
  }
  return ids[size_t(k - 1)];
}

}  // namespace topk
