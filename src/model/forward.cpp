#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/timer.h"
#include "model/blas_ops.h"
#include "topk/attention.h"

namespace topk {

Batch make_batch(const std::vector<std::vector<int>>& seqs, const std::vector<int>& loss_from) {
  Batch b;
  b.cu_seqlens.push_back(0);
  for (size_t s = 0; s < seqs.size(); s++) {
    const auto& q = seqs[s];
    int from = loss_from.empty() ? 0 : loss_from[s];
    for (size_t t = 0; t < q.size(); t++) {
      b.tokens.push_back(q[t]);
      bool has = t + 1 < q.size();
      b.targets.push_back(has ? q[t + 1] : -1);
      b.mask.push_back(has && int(t) >= from ? 1.0f : 0.0f);
      b.pos.push_back(int(t));
    }
    b.cu_seqlens.push_back(int32_t(b.tokens.size()));
  }
  return b;
}

namespace {

struct Attn {  // views of one layer's attention tensors over the packed batch
  TensorView q, k, v, o, lse, idx;
  Seqs seqs;
  AttnOpts opts;
};

Attn attn_views(const ModelConfig& c, const Batch& b, LayerActs& a) {
  int64_t N = b.size();
  Attn r;
  r.q = make_view(a.q.data(), DType::f32, {1, N, c.heads, c.head_dim});
  r.k = make_view(a.k.data(), DType::f32, {1, N, c.kv_heads, c.head_dim});
  r.v = make_view(a.v.data(), DType::f32, {1, N, c.kv_heads, c.head_dim});
  r.o = make_view(a.o.data(), DType::f32, {1, N, c.heads, c.head_dim});
  r.lse = make_view(a.lse.data(), DType::f32, {1, N, c.heads});
  r.seqs.cu_seqlens_q = b.cu_seqlens;
  r.seqs.cu_seqlens_k = b.cu_seqlens;
  r.opts.causal = true;
  return r;
}

}  // namespace

void model_forward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a) {
  const ModelConfig& c = m.cfg;
  const int N = b.size(), H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim,
            I = c.inter, V = c.vocab;
  TOPK_CHECK(N > 0 && b.cu_seqlens.size() >= 2 && b.cu_seqlens.back() == N && int(b.pos.size()) == N,
             "model_forward: batch of %d tokens has inconsistent cu_seqlens/pos", N);
  for (int t : b.tokens)
    TOPK_CHECK(t >= 0 && t < V, "model_forward: token id %d outside the vocabulary [0, %d)", t, V);
  TOPK_CHECK(pol.kind == PolicyKind::full || pol.kind == PolicyKind::topk, "model_forward: "
             "policy '%s' is for decoding only; training and whole-sequence forwards take full or "
             "topk", policy_str(pol).c_str());
  std::vector<float> inv = rope_inv_freq(c);
  a.L.resize(size_t(c.layers));
  std::vector<float> h(size_t(N) * H);
  for (int n = 0; n < N; n++)
    std::memcpy(&h[size_t(n) * H], m.at(m.embed) + size_t(b.tokens[n]) * H, sizeof(float) * H);
  for (int l = 0; l < c.layers; l++) {
    const LayerParams& p = m.layer[size_t(l)];
    LayerActs& A = a.L[size_t(l)];
    A.x = h;
    A.rstd1.resize(N), A.xn1.resize(size_t(N) * H);
    rmsnorm_fwd(A.x.data(), m.at(p.in_norm), A.xn1.data(), A.rstd1.data(), N, H, c.rms_eps);
    A.qraw.resize(size_t(N) * Q), A.kraw.resize(size_t(N) * KV), A.v.resize(size_t(N) * KV);
    linear_fwd(A.xn1.data(), m.at(p.q), m.at(p.q_b), A.qraw.data(), N, H, Q);
    linear_fwd(A.xn1.data(), m.at(p.k), m.at(p.k_b), A.kraw.data(), N, H, KV);
    linear_fwd(A.xn1.data(), m.at(p.v), m.at(p.v_b), A.v.data(), N, H, KV);
    A.q.resize(A.qraw.size()), A.k.resize(A.kraw.size());
    if (c.qk_norm()) {
      A.qrstd.resize(size_t(N) * c.heads), A.krstd.resize(size_t(N) * c.kv_heads);
      rmsnorm_fwd(A.qraw.data(), m.at(p.q_norm), A.q.data(), A.qrstd.data(), N * c.heads, D, c.rms_eps);
      rmsnorm_fwd(A.kraw.data(), m.at(p.k_norm), A.k.data(), A.krstd.data(), N * c.kv_heads, D,
                  c.rms_eps);
    } else {
      A.q = A.qraw;
      A.k = A.kraw;
    }
    rope_apply(A.q.data(), b.pos.data(), N, c.heads, D, inv.data(), false);
    rope_apply(A.k.data(), b.pos.data(), N, c.kv_heads, D, inv.data(), false);
    A.o.resize(size_t(N) * Q), A.lse.resize(size_t(N) * c.heads);
    Attn at = attn_views(c, b, A);
    double t0 = now_seconds();
    if (pol.is_topk()) {
      int hsel = pol.sel.share_group ? c.kv_heads : c.heads;
      // Index columns follow the longest packed sequence, not the packed total.
      int64_t longest = 0;
      for (size_t i = 0; i + 1 < b.cu_seqlens.size(); i++)
        longest = std::max<int64_t>(longest, b.cu_seqlens[i + 1] - b.cu_seqlens[i]);
      A.K = select_capacity(pol.sel, longest);
      A.idx.assign(size_t(N) * hsel * A.K, -1);
      at.idx = make_view(A.idx.data(), DType::i32, {1, N, hsel, A.K});
      topk_attention_forward(at.q, at.k, at.v, at.seqs, at.opts, pol.sel, at.o, at.lse, at.idx);
    } else {
      attention_forward(at.q, at.k, at.v, at.seqs, at.opts, at.o, at.lse);
    }
    a.attn_fwd_s += now_seconds() - t0;
    A.h1.resize(size_t(N) * H);
    linear_fwd(A.o.data(), m.at(p.o), m.at(p.o_b), A.h1.data(), N, Q, H);
    for (size_t i = 0; i < A.h1.size(); i++) A.h1[i] += A.x[i];
    A.rstd2.resize(N), A.xn2.resize(size_t(N) * H);
    rmsnorm_fwd(A.h1.data(), m.at(p.post_norm), A.xn2.data(), A.rstd2.data(), N, H, c.rms_eps);
    A.gate.resize(size_t(N) * I), A.up.resize(size_t(N) * I), A.act.resize(size_t(N) * I);
    linear_fwd(A.xn2.data(), m.at(p.gate), nullptr, A.gate.data(), N, H, I);
    linear_fwd(A.xn2.data(), m.at(p.up), nullptr, A.up.data(), N, H, I);
    for (size_t i = 0; i < A.act.size(); i++) A.act[i] = silu(A.gate[i]) * A.up[i];
    linear_fwd(A.act.data(), m.at(p.down), nullptr, h.data(), N, I, H);
    for (size_t i = 0; i < h.size(); i++) h[i] += A.h1[i];
  }
  a.xf = h;
  a.rstdf.resize(N), a.xnf.resize(size_t(N) * H), a.logits.resize(size_t(N) * V);
  rmsnorm_fwd(a.xf.data(), m.at(m.final_norm), a.xnf.data(), a.rstdf.data(), N, H, c.rms_eps);
  linear_fwd(a.xnf.data(), m.at(m.lm_head), nullptr, a.logits.data(), N, H, V);
}

double cross_entropy(const float* logits, const Batch& b, int V, float* dlogits, float grad_scale,
                     double* count) {
  double total = 0, cnt = 0;
  for (int n = 0; n < b.size(); n++) {
    int t = b.targets[size_t(n)];
    float w = t < 0 ? 0.0f : b.mask.empty() ? 1.0f : b.mask[size_t(n)];
    float* d = dlogits ? dlogits + size_t(n) * V : nullptr;
    if (w == 0) {
      if (d) std::fill(d, d + V, 0.0f);
      continue;
    }
    TOPK_CHECK(t < V, "cross_entropy: target %d outside the vocabulary [0, %d)", t, V);
    const float* r = logits + size_t(n) * V;
    float mx = *std::max_element(r, r + V);
    double s = 0;
    for (int i = 0; i < V; i++) s += std::exp(double(r[i] - mx));
    double lse = mx + std::log(s);
    total += w * (lse - r[t]);
    cnt += w;
    if (d) {
      for (int i = 0; i < V; i++) d[i] = grad_scale * w * float(std::exp(double(r[i]) - lse));
      d[t] -= grad_scale * w;
    }
  }
  if (count) *count += cnt;
  return total;
}

void model_backward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a,
                    const float* dlogits, float* grad) {
  const ModelConfig& c = m.cfg;
  const int N = b.size(), H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim,
            I = c.inter, V = c.vocab;
  auto g = [&](size_t off) { return off == kNoParam ? nullptr : grad + off; };
  std::vector<float> inv = rope_inv_freq(c);
  std::vector<float> dxn(size_t(N) * H), dh(size_t(N) * H, 0.0f);
  linear_bwd(a.xnf.data(), m.at(m.lm_head), dlogits, dxn.data(), false, g(m.lm_head), nullptr, N,
             H, V);
  rmsnorm_bwd(a.xf.data(), m.at(m.final_norm), a.rstdf.data(), dxn.data(), dh.data(),
              g(m.final_norm), N, H);
  std::vector<float> dact(size_t(N) * I), dgate(size_t(N) * I), dup(size_t(N) * I);
  std::vector<float> dq(size_t(N) * Q), dk(size_t(N) * KV), dv(size_t(N) * KV), dO(size_t(N) * Q);
  std::vector<float> dqraw, dkraw;
  for (int l = c.layers - 1; l >= 0; l--) {
    const LayerParams& p = m.layer[size_t(l)];
    LayerActs& A = a.L[size_t(l)];
    // MLP: h = h1 + down(silu(gate) * up)
    linear_bwd(A.act.data(), m.at(p.down), dh.data(), dact.data(), false, g(p.down), nullptr, N, I, H);
    for (size_t i = 0; i < dact.size(); i++) {
      float s = 1.0f / (1.0f + std::exp(-A.gate[i]));
      dup[i] = dact[i] * A.gate[i] * s;
      dgate[i] = dact[i] * A.up[i] * s * (1.0f + A.gate[i] * (1.0f - s));
    }
    linear_bwd(A.xn2.data(), m.at(p.gate), dgate.data(), dxn.data(), false, g(p.gate), nullptr, N, H, I);
    linear_bwd(A.xn2.data(), m.at(p.up), dup.data(), dxn.data(), true, g(p.up), nullptr, N, H, I);
    rmsnorm_bwd(A.h1.data(), m.at(p.post_norm), A.rstd2.data(), dxn.data(), dh.data(),
                g(p.post_norm), N, H);  // dh is now d h1
    // Attention: h1 = x + o_proj(attn(q, k, v))
    linear_bwd(A.o.data(), m.at(p.o), dh.data(), dO.data(), false, g(p.o), g(p.o_b), N, Q, H);
    Attn at = attn_views(c, b, A);
    TensorView vdo = make_view(dO.data(), DType::f32, {1, N, c.heads, D});
    TensorView vdq = make_view(dq.data(), DType::f32, {1, N, c.heads, D});
    TensorView vdk = make_view(dk.data(), DType::f32, {1, N, c.kv_heads, D});
    TensorView vdv = make_view(dv.data(), DType::f32, {1, N, c.kv_heads, D});
    double t0 = now_seconds();
    if (pol.is_topk()) {
      int hsel = pol.sel.share_group ? c.kv_heads : c.heads;
      at.idx = make_view(A.idx.data(), DType::i32, {1, N, hsel, A.K});
      sparse_attention_backward(at.q, at.k, at.v, at.idx, at.o, at.lse, vdo, at.seqs, at.opts, vdq,
                                vdk, vdv);
    } else {
      attention_backward(at.q, at.k, at.v, at.o, at.lse, vdo, at.seqs, at.opts, vdq, vdk, vdv);
    }
    a.attn_bwd_s += now_seconds() - t0;
    rope_apply(dq.data(), b.pos.data(), N, c.heads, D, inv.data(), true);
    rope_apply(dk.data(), b.pos.data(), N, c.kv_heads, D, inv.data(), true);
    float* dqp = dq.data();
    float* dkp = dk.data();
    if (c.qk_norm()) {
      dqraw.assign(dq.size(), 0.0f);
      dkraw.assign(dk.size(), 0.0f);
      rmsnorm_bwd(A.qraw.data(), m.at(p.q_norm), A.qrstd.data(), dq.data(), dqraw.data(),
                  g(p.q_norm), N * c.heads, D);
      rmsnorm_bwd(A.kraw.data(), m.at(p.k_norm), A.krstd.data(), dk.data(), dkraw.data(),
                  g(p.k_norm), N * c.kv_heads, D);
      dqp = dqraw.data();
      dkp = dkraw.data();
    }
    linear_bwd(A.xn1.data(), m.at(p.q), dqp, dxn.data(), false, g(p.q), g(p.q_b), N, H, Q);
    linear_bwd(A.xn1.data(), m.at(p.k), dkp, dxn.data(), true, g(p.k), g(p.k_b), N, H, KV);
    linear_bwd(A.xn1.data(), m.at(p.v), dv.data(), dxn.data(), true, g(p.v), g(p.v_b), N, H, KV);
    rmsnorm_bwd(A.x.data(), m.at(p.in_norm), A.rstd1.data(), dxn.data(), dh.data(), g(p.in_norm), N,
                H);  // dh is now d x
  }
  float* de = grad + m.embed;
  for (int n = 0; n < N; n++) {
    float* r = de + size_t(b.tokens[size_t(n)]) * H;
    for (int i = 0; i < H; i++) r[i] += dh[size_t(n) * H + i];
  }
}

}  // namespace topk
