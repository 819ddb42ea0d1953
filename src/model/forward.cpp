#include "model/forward.h"

#include "model/ops.h"
#include "model/views.h"

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

double loss_count(const Batch& b) {
  double c = 0;
  for (size_t i = 0; i < b.targets.size(); i++)
    if (b.targets[i] >= 0) c += b.mask.empty() ? 1.0 : b.mask[i];
  return c;
}

namespace {

// A host array as an [N] tensor on the device, through a reusable buffer.
template <class T>
TensorView upload(Buffer& buf, const std::vector<T>& h, DType dt, Device dev) {
  TensorView v = scratch(buf, dt, {int64_t(h.size())}, dev);
  copy(v, make_view(const_cast<T*>(h.data()), dt, {int64_t(h.size())}));
  return v;
}

}  // namespace

void model_forward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a) {
  const ModelConfig& c = m.cfg;
  const int64_t N = b.size(), H = c.hidden, V = c.vocab, L = c.layers;
  TOPK_CHECK(N > 0 && b.cu_seqlens.size() >= 2 && b.cu_seqlens.front() == 0 &&
                 b.cu_seqlens.back() == N && int64_t(b.pos.size()) == N,
             "model_forward: batch of %lld tokens has inconsistent cu_seqlens/pos", (long long)N);
  for (int t : b.tokens)
    TOPK_CHECK(t >= 0 && t < V, "model_forward: token id %d outside the vocabulary [0, %lld)", t,
               (long long)V);
  const Device dev = m.device();
  TensorView tokens = upload(a.tokens, b.tokens, DType::i32, dev);
  TensorView pos = upload(a.pos, b.pos, DType::i32, dev);
  a.x.resize(size_t(L + 1));
  a.L.resize(a.recompute ? 1 : size_t(L));
  TensorView x = scratch(a.x[0], DType::f32, {N, H}, dev);
  ops::embedding_forward(x, param_view(m, m.embed, {V, H}), tokens);
  AttnSite site;
  site.pol = pol;
  site.cu_seqlens = b.cu_seqlens;
  if (a.time_attention) site.fwd_seconds = &a.attn_fwd_s;
  site.ix_train = a.ix_train;
  for (int64_t l = 0; l < L; l++) {
    TensorView out = scratch(a.x[size_t(l + 1)], DType::f32, {N, H}, dev);
    layer_forward(m, int(l), x, out, pos, site, a.L[a.recompute ? 0 : size_t(l)]);
    x = out;
  }
  const DType cd = m.compute();
  TensorView xnf = scratch(a.xnf, cd, {N, H}, dev);
  ops::rmsnorm_forward(xnf, scratch(a.rstdf, DType::f32, {N}, dev), x,
                       param_view(m, m.final_norm, {H}), float(c.rms_eps));
  ops::gemm(scratch(a.logits, cd, {N, V}, dev), xnf, false, matrix_view(m, m.lm_head, V, H), true);
}

double model_loss(const Model& m, const Batch& b, Acts& a, float grad_scale, double* count) {
  const int64_t N = b.size(), V = m.cfg.vocab;
  const Device dev = m.device();
  TOPK_CHECK(N > 0 && a.logits.numel() >= N * V, "model_loss: no forward of this batch to take "
             "the loss of");
  std::vector<float> w(static_cast<size_t>(N));
  double cnt = 0;
  for (int64_t n = 0; n < N; n++) {
    const int t = b.targets[size_t(n)];
    TOPK_CHECK(t < V, "model_loss: target %d outside the vocabulary [0, %lld)", t, (long long)V);
    w[size_t(n)] = t < 0 ? 0.0f : b.mask.empty() ? 1.0f : b.mask[size_t(n)];
    if (t >= 0) cnt += w[size_t(n)];
  }
  TensorView logits = view_at(a.logits.view(), 0, {N, V});
  TensorView losses = scratch(a.losses, DType::f32, {N}, dev);
  ops::cross_entropy(losses, grad_scale != 0 ? logits : TensorView{}, logits,
                     upload(a.targets, b.targets, DType::i32, dev),
                     upload(a.weights, w, DType::f32, dev), grad_scale);
  a.losses_host.resize(size_t(N));
  copy(make_view(a.losses_host.data(), DType::f32, {N}), losses);
  double total = 0;
  for (float x : a.losses_host) total += x;  // in row order: the same sum on every run
  if (count) *count += cnt;
  return total;
}

void model_backward(const Model& m, const Batch& b, const AttnPolicy& pol, Acts& a,
                    const TensorView& grad) {
  const ModelConfig& c = m.cfg;
  const int64_t N = b.size(), H = c.hidden, V = c.vocab, L = c.layers;
  const Device dev = m.device();
  TOPK_CHECK(grad.device == dev && grad.dtype == DType::f32 && grad.numel() == m.numel,
             "model_backward: grad %s must be f32 [%lld] on the model's device", grad.str().c_str(),
             (long long)m.numel);
  TOPK_CHECK(int64_t(a.x.size()) == L + 1 && a.x[0].numel() >= N * H, "model_backward: run "
             "model_forward on this batch first");
  auto saved = [&](Buffer& buf, std::initializer_list<int64_t> shape) {
    return view_at(buf.view(), 0, shape);
  };
  TensorView dlogits = saved(a.logits, {N, V}), xnf = saved(a.xnf, {N, H});
  TensorView dxn = scratch(a.grads.dxn, DType::f32, {N, H}, dev);
  ops::gemm(dxn, dlogits, false, matrix_view(m, m.lm_head, V, H), false);
  ops::gemm(param_at(grad, m.lm_head, {V, H}), dlogits, true, xnf, false, 1.0f, 1.0f);
  TensorView dh = scratch(a.dh, DType::f32, {N, H}, dev);
  TensorView dh2 = scratch(a.dh2, DType::f32, {N, H}, dev);
  ops::rmsnorm_backward(dh, false, param_at(grad, m.final_norm, {H}), dxn, saved(a.x[size_t(L)], {N, H}),
                        param_view(m, m.final_norm, {H}), saved(a.rstdf, {N}));
  TensorView pos = saved(a.pos, {N});
  AttnSite site;
  site.pol = pol;
  site.cu_seqlens = b.cu_seqlens;
  if (a.time_attention) site.fwd_seconds = &a.attn_fwd_s, site.bwd_seconds = &a.attn_bwd_s;
  for (int64_t l = L - 1; l >= 0; l--) {
    TensorView x = saved(a.x[size_t(l)], {N, H});
    LayerActs& la = a.L[a.recompute ? 0 : size_t(l)];
    // The recomputed layer writes the same values into the next layer's input, which the
    // backward no longer needs.
    if (a.recompute) layer_forward(m, int(l), x, saved(a.x[size_t(l + 1)], {N, H}), pos, site, la);
    layer_backward(m, int(l), x, pos, site, la, dh, dh2, grad, a.grads);
    if (a.layer_done) a.layer_done(int(l));
    std::swap(dh, dh2);
  }
  std::vector<int32_t> tokens(b.tokens.begin(), b.tokens.end());
  ops::embedding_backward(param_at(grad, m.embed, {V, H}), dh, tokens);
}

std::vector<float> logits_host(const Acts& a) {
  std::vector<float> h(size_t(a.logits.numel()));
  if (a.logits.view().dtype == DType::f32) {
    copy(make_view(h.data(), DType::f32, {a.logits.numel()}), a.logits);
  } else {
    Buffer tmp(a.logits.view().dtype, {a.logits.numel()}, Device::cpu);
    copy(tmp, a.logits);
    copy(make_view(h.data(), DType::f32, {a.logits.numel()}), tmp);
  }
  return h;
}

}  // namespace topk
