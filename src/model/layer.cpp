#include "model/layer.h"

#include "core/device_mem.h"
#include "core/timer.h"
#include "model/indexer.h"
#include "model/infer.h"
#include "model/ops.h"
#include "model/views.h"
#include "topk/approx.h"

namespace topk {

namespace {

struct Dims {
  int64_t N, H, Q, KV, D, I, Hq, Hkv;
};
Dims dims_of(const Model& m, const TensorView& x) {
  const ModelConfig& c = m.cfg;
  return {x.shape[0], c.hidden, c.q_dim(), c.kv_dim(), c.head_dim, c.inter, c.heads, c.kv_heads};
}

// Adds the seconds of its scope to *sum (when given), with the device synchronised at both ends.
struct Timed {
  double* sum;
  Device dev;
  double t0;
  Timed(double* s, Device d) : sum(s), dev(d) {
    if (sum && dev == Device::cuda) device_synchronize();
    t0 = now_seconds();
  }
  ~Timed() noexcept(false) {
    if (!sum) return;
    if (dev == Device::cuda) device_synchronize();
    *sum += now_seconds() - t0;
  }
};

// Attention of the packed form: the call's own keys, full, top-k or the indexer's selection,
// causal per sequence.
void attend_packed(const Model& m, const Dims& d, const AttnSite& site, LayerActs& a,
                   const TensorView& q, const TensorView& k, const TensorView& v,
                   const TensorView& o, const TensorView& lse) {
  const AttnPolicy& pol = site.pol;
  TOPK_CHECK(pol.trains() && pol.adapt == BudgetAdapt::none, "model: policy '%s' is for decoding "
             "only; training and whole-sequence forwards take full, topk (without adapt=) or "
             "indexer", policy_str(pol).c_str());
  Seqs seqs;
  seqs.cu_seqlens_q = site.cu_seqlens;
  seqs.cu_seqlens_k = site.cu_seqlens;
  AttnOpts opts;
  opts.causal = true;
  if (pol.kind == PolicyKind::indexer) {
    indexer_select_packed(m, site.cu_seqlens, indexer_select_opts(m, pol), a.ix, a.idx);
    a.K = a.ix.K;
    a.hsel = d.Hkv;
    sparse_attention_forward(q, k, v, view_at(a.idx.view(), 0, {1, d.N, d.Hkv, a.K}), seqs, opts,
                             o, lse);
    return;
  }
  if (!pol.is_topk()) {
    attention_forward(q, k, v, seqs, opts, o, lse);
    return;
  }
  // Index columns follow the longest packed sequence, not the packed total.
  int64_t longest = 0;
  for (size_t i = 0; i + 1 < site.cu_seqlens.size(); i++)
    longest = std::max<int64_t>(longest, site.cu_seqlens[i + 1] - site.cu_seqlens[i]);
  const int64_t hsel = pol.sel.share_group ? d.Hkv : d.Hq;
  a.hsel = hsel;
  a.K = select_capacity(pol.sel, longest);
  TensorView idx = scratch(a.idx, DType::i32, {1, d.N, hsel, a.K}, q.device);
  topk_attention_forward(q, k, v, seqs, opts, pol.sel, o, lse, idx);
}

}  // namespace

TensorView as_compute(const TensorView& src, DType cd, Buffer& tmp) {
  if (src.dtype == cd) return src;
  TensorView t = scratch(tmp, cd, {src.shape[0], src.numel() / src.shape[0]}, src.device);
  ops::convert(t, src);
  return t;
}

void layer_forward(const Model& m, int l, const TensorView& x, const TensorView& out,
                   const TensorView& pos, const AttnSite& site, LayerActs& a) {
  const ModelConfig& c = m.cfg;
  const LayerParams& p = m.layer[size_t(l)];
  const Dims d = dims_of(m, x);
  const Device dev = x.device;
  const DType cd = m.compute();
  const float eps = float(c.rms_eps);

  TensorView rstd1 = scratch(a.rstd1, DType::f32, {d.N}, dev);
  TensorView xn1 = scratch(a.xn1, cd, {d.N, d.H}, dev);
  ops::rmsnorm_forward(xn1, rstd1, x, param_view(m, p.in_norm, {d.H}), eps);

  // Projections. With q/k norms the raw projections are kept for the backward.
  const bool qkn = c.qk_norm();
  TensorView qp = scratch(qkn ? a.qraw : a.q, cd, {d.N, d.Q}, dev);
  TensorView kp = scratch(qkn ? a.kraw : a.k, cd, {d.N, d.KV}, dev);
  TensorView v = scratch(a.v, cd, {d.N, d.KV}, dev);
  ops::gemm(qp, xn1, false, matrix_view(m, p.q, d.Q, d.H), true);
  ops::gemm(kp, xn1, false, matrix_view(m, p.k, d.KV, d.H), true);
  ops::gemm(v, xn1, false, matrix_view(m, p.v, d.KV, d.H), true);
  if (p.q_b != kNoParam) {
    ops::add_bias(qp, param_view(m, p.q_b, {d.Q}));
    ops::add_bias(kp, param_view(m, p.k_b, {d.KV}));
    ops::add_bias(v, param_view(m, p.v_b, {d.KV}));
  }
  TensorView q = qp, k = kp;
  if (qkn) {
    q = scratch(a.q, cd, {d.N, d.Q}, dev);
    k = scratch(a.k, cd, {d.N, d.KV}, dev);
    ops::rmsnorm_forward(reshape(q, {d.N * d.Hq, d.D}), scratch(a.qrstd, DType::f32, {d.N * d.Hq}, dev),
                         reshape(qp, {d.N * d.Hq, d.D}), param_view(m, p.q_norm, {d.D}), eps);
    ops::rmsnorm_forward(reshape(k, {d.N * d.Hkv, d.D}),
                         scratch(a.krstd, DType::f32, {d.N * d.Hkv}, dev),
                         reshape(kp, {d.N * d.Hkv, d.D}), param_view(m, p.k_norm, {d.D}), eps);
  }
  ops::rope(reshape(q, {d.N, d.Hq, d.D}), pos, m.inv_freq, false);
  ops::rope(reshape(k, {d.N, d.Hkv, d.D}), pos, m.inv_freq, false);

  // The Lightning Indexer (model/indexer.h): its keys go to the cache on every cached call, so
  // that any prefill leaves them for an indexer decode; its queries only when it selects or
  // trains.
  const bool ix_sel = site.pol.kind == PolicyKind::indexer;
  if (ix_sel) indexer_select_opts(m, site.pol);  // raises for a model without an indexer
  TOPK_CHECK(!site.ix_train || (!site.cache && c.has_indexer() && (!site.ix_train->sparse || ix_sel)),
             "model: indexer training needs a model with an indexer, packed sequences, and the "
             "indexer policy for its sparse stage");
  if (c.has_indexer() && (site.cache || ix_sel || site.ix_train))
    indexer_project(m, l, xn1, pos, a.ix, ix_sel || site.ix_train);

  TensorView o = scratch(a.o, cd, {d.N, d.Q}, dev);
  TensorView lse = scratch(a.lse, DType::f32, {d.N, d.Hq}, dev);
  if (!site.cache) {
    {
      Timed timed(site.fwd_seconds, dev);
      attend_packed(m, d, site, a, reshape(q, {1, d.N, d.Hq, d.D}),
                    reshape(k, {1, d.N, d.Hkv, d.D}), reshape(v, {1, d.N, d.Hkv, d.D}),
                    reshape(o, {1, d.N, d.Hq, d.D}), reshape(lse, {1, d.N, d.Hq}));
    }
    if (site.ix_train)
      indexer_train(m, l, xn1, pos, site.cu_seqlens, reshape(q, {1, d.N, d.Hq, d.D}),
                    reshape(k, {1, d.N, d.Hkv, d.D}), reshape(lse, {1, d.N, d.Hq}), a.ix,
                    *site.ix_train);
  } else {
    KVCache& kc = *site.cache;
    TensorView ck = kc.k[size_t(l)], cv = kc.v[size_t(l)];
    const int64_t rows = ck.shape[0] * ck.shape[1];
    ops::scatter_rows(reshape(ck, {rows, d.KV}), site.append_rows, k);
    ops::scatter_rows(reshape(cv, {rows, d.KV}), site.append_rows, v);
    IndexerInput ixin;
    if (c.has_indexer()) {
      const int64_t dI = c.index_head_dim;
      const TensorView knew = view_at(a.ix.k.view(), 0, {d.N, dI});
      if (kc.ki_scale.empty()) {
        ops::scatter_rows(reshape(kc.ki[size_t(l)], {rows, dI}), site.append_rows, knew);
      } else {  // an FP8 cache: the new keys quantised, then their bytes and scales appended
        TensorView k8 = scratch(a.ix.k8, DType::f8e4m3, {d.N, dI}, dev);
        TensorView ks = scratch(a.ix.kscale, DType::f32, {d.N}, dev);
        indexer_quantize_keys(reshape(knew, {1, d.N, 1, dI}), reshape(k8, {1, d.N, 1, dI}),
                              reshape(ks, {1, d.N}));
        ops::scatter_rows(reshape(kc.ki[size_t(l)], {rows, dI}), site.append_rows, k8);
        ops::scatter_rows(reshape(kc.ki_scale[size_t(l)], {rows, 1}), site.append_rows,
                          reshape(ks, {d.N, 1}));
      }
      if (ix_sel) {
        ixin.q = view_at(a.ix.q.view(), 0, {site.B, site.T, c.index_n_heads, dI});
        ixin.w = view_at(a.ix.w.view(), 0, {site.B, site.T, c.index_n_heads});
        ixin.k = kc.ki[size_t(l)];
        if (!kc.ki_scale.empty()) ixin.k_scale = kc.ki_scale[size_t(l)];
        ixin.sel = indexer_select_opts(m, site.pol);
      }
    }
    policy_attention(site.pol, l, reshape(q, {site.B, site.T, d.Hq, d.D}), ck, cv, site.seqlens_q,
                     site.seqlens_k, reshape(o, {site.B, site.T, d.Hq, d.D}),
                     reshape(lse, {site.B, site.T, d.Hq}), site.stats,
                     ix_sel ? &ixin : nullptr);
  }

  // h1 = x + o Wo^T (+ bo): the residual enters as the GEMM's C.
  TensorView h1 = scratch(a.h1, DType::f32, {d.N, d.H}, dev);
  ops::convert(h1, x);
  ops::gemm(h1, o, false, matrix_view(m, p.o, d.H, d.Q), true, 1.0f, 1.0f);
  if (p.o_b != kNoParam) ops::add_bias(h1, param_view(m, p.o_b, {d.H}));

  TensorView rstd2 = scratch(a.rstd2, DType::f32, {d.N}, dev);
  TensorView xn2 = scratch(a.xn2, cd, {d.N, d.H}, dev);
  ops::rmsnorm_forward(xn2, rstd2, h1, param_view(m, p.post_norm, {d.H}), eps);
  TensorView gu = scratch(a.gu, cd, {d.N, 2 * d.I}, dev);
  ops::gemm(gu, xn2, false, matrix_view(m, p.gate, 2 * d.I, d.H), true);
  TensorView act = scratch(a.act, cd, {d.N, d.I}, dev);
  ops::swiglu_forward(act, gu);
  ops::convert(out, h1);
  ops::gemm(out, act, false, matrix_view(m, p.down, d.H, d.I), true, 1.0f, 1.0f);
}

void layer_backward(const Model& m, int l, const TensorView& x, const TensorView& pos,
                    const AttnSite& site, LayerActs& a, const TensorView& dout,
                    const TensorView& dx, const TensorView& grad, LayerGrads& g) {
  const ModelConfig& c = m.cfg;
  const LayerParams& p = m.layer[size_t(l)];
  const Dims d = dims_of(m, x);
  const Device dev = x.device;
  const DType cd = m.compute();
  TOPK_CHECK(!site.cache, "layer_backward: the backward runs over packed sequences, not a cache");
  auto act_of = [&](Buffer& b, std::initializer_list<int64_t> shape) {
    return view_at(b.view(), 0, shape);
  };
  const TensorView xn1 = act_of(a.xn1, {d.N, d.H}), xn2 = act_of(a.xn2, {d.N, d.H}),
                   h1 = act_of(a.h1, {d.N, d.H}), gu = act_of(a.gu, {d.N, 2 * d.I}),
                   act = act_of(a.act, {d.N, d.I}), o = act_of(a.o, {d.N, d.Q});

  // MLP: out = h1 + act Wd^T.
  TensorView dout_c = as_compute(dout, cd, g.dout_c);
  TensorView dact = scratch(g.dact, cd, {d.N, d.I}, dev);
  ops::gemm(dact, dout_c, false, matrix_view(m, p.down, d.H, d.I), false);
  ops::gemm(param_at(grad, p.down, {d.H, d.I}), dout_c, true, act, false, 1.0f, 1.0f);
  TensorView dgu = scratch(g.dgu, cd, {d.N, 2 * d.I}, dev);
  ops::swiglu_backward(dgu, dact, gu);
  ops::gemm(param_at(grad, p.gate, {2 * d.I, d.H}), dgu, true, xn2, false, 1.0f, 1.0f);
  TensorView dxn = scratch(g.dxn, DType::f32, {d.N, d.H}, dev);
  ops::gemm(dxn, dgu, false, matrix_view(m, p.gate, 2 * d.I, d.H), false);
  TensorView dh1 = scratch(g.dh1, DType::f32, {d.N, d.H}, dev);
  ops::convert(dh1, dout);
  ops::rmsnorm_backward(dh1, true, param_at(grad, p.post_norm, {d.H}), dxn, h1,
                        param_view(m, p.post_norm, {d.H}), act_of(a.rstd2, {d.N}));

  // Attention: h1 = x + o Wo^T (+ bo).
  TensorView dh1_c = as_compute(dh1, cd, g.dh1_c);
  TensorView dO = scratch(g.dO, cd, {d.N, d.Q}, dev);
  ops::gemm(dO, dh1_c, false, matrix_view(m, p.o, d.H, d.Q), false);
  ops::gemm(param_at(grad, p.o, {d.H, d.Q}), dh1_c, true, o, false, 1.0f, 1.0f);
  if (p.o_b != kNoParam) ops::bias_grad(param_at(grad, p.o_b, {d.H}), dh1);

  TensorView dq = scratch(g.dq, DType::f32, {d.N, d.Q}, dev);
  TensorView dk = scratch(g.dk, DType::f32, {d.N, d.KV}, dev);
  TensorView dv = scratch(g.dv, DType::f32, {d.N, d.KV}, dev);
  {
    Seqs seqs;
    seqs.cu_seqlens_q = site.cu_seqlens;
    seqs.cu_seqlens_k = site.cu_seqlens;
    AttnOpts opts;
    opts.causal = true;
    auto v4 = [&](Buffer& b, int64_t h) { return view_at(b.view(), 0, {1, d.N, h, d.D}); };
    TensorView q4 = v4(a.q, d.Hq), k4 = v4(a.k, d.Hkv), vv4 = v4(a.v, d.Hkv), o4 = v4(a.o, d.Hq);
    TensorView lse = view_at(a.lse.view(), 0, {1, d.N, d.Hq});
    TensorView do4 = reshape(dO, {1, d.N, d.Hq, d.D}), dq4 = reshape(dq, {1, d.N, d.Hq, d.D}),
               dk4 = reshape(dk, {1, d.N, d.Hkv, d.D}), dv4 = reshape(dv, {1, d.N, d.Hkv, d.D});
    Timed timed(site.bwd_seconds, dev);
    if (site.pol.is_topk() || site.pol.kind == PolicyKind::indexer) {
      // The indexer's selection passes no gradient to the indexer here: its KL trains it.
      TensorView idx = view_at(a.idx.view(), 0, {1, d.N, a.hsel, a.K});
      sparse_attention_backward(q4, k4, vv4, idx, o4, lse, do4, seqs, opts, dq4, dk4, dv4);
    } else {
      attention_backward(q4, k4, vv4, o4, lse, do4, seqs, opts, dq4, dk4, dv4);
    }
  }
  ops::rope(reshape(dq, {d.N, d.Hq, d.D}), pos, m.inv_freq, true);
  ops::rope(reshape(dk, {d.N, d.Hkv, d.D}), pos, m.inv_freq, true);
  TensorView dqp = dq, dkp = dk;  // gradients of the raw projections
  if (c.qk_norm()) {
    dqp = scratch(g.dqn, DType::f32, {d.N, d.Q}, dev);
    dkp = scratch(g.dkn, DType::f32, {d.N, d.KV}, dev);
    ops::rmsnorm_backward(reshape(dqp, {d.N * d.Hq, d.D}), false, param_at(grad, p.q_norm, {d.D}),
                          reshape(dq, {d.N * d.Hq, d.D}), act_of(a.qraw, {d.N * d.Hq, d.D}),
                          param_view(m, p.q_norm, {d.D}), act_of(a.qrstd, {d.N * d.Hq}));
    ops::rmsnorm_backward(reshape(dkp, {d.N * d.Hkv, d.D}), false,
                          param_at(grad, p.k_norm, {d.D}), reshape(dk, {d.N * d.Hkv, d.D}),
                          act_of(a.kraw, {d.N * d.Hkv, d.D}), param_view(m, p.k_norm, {d.D}),
                          act_of(a.krstd, {d.N * d.Hkv}));
  }
  if (p.q_b != kNoParam) {
    ops::bias_grad(param_at(grad, p.q_b, {d.Q}), dqp);
    ops::bias_grad(param_at(grad, p.k_b, {d.KV}), dkp);
    ops::bias_grad(param_at(grad, p.v_b, {d.KV}), dv);
  }
  TensorView dq_c = as_compute(dqp, cd, g.dq_c), dk_c = as_compute(dkp, cd, g.dk_c),
             dv_c = as_compute(dv, cd, g.dv_c);
  ops::gemm(param_at(grad, p.q, {d.Q, d.H}), dq_c, true, xn1, false, 1.0f, 1.0f);
  ops::gemm(param_at(grad, p.k, {d.KV, d.H}), dk_c, true, xn1, false, 1.0f, 1.0f);
  ops::gemm(param_at(grad, p.v, {d.KV, d.H}), dv_c, true, xn1, false, 1.0f, 1.0f);
  ops::gemm(dxn, dq_c, false, matrix_view(m, p.q, d.Q, d.H), false);
  ops::gemm(dxn, dk_c, false, matrix_view(m, p.k, d.KV, d.H), false, 1.0f, 1.0f);
  ops::gemm(dxn, dv_c, false, matrix_view(m, p.v, d.KV, d.H), false, 1.0f, 1.0f);
  ops::convert(dx, dh1);
  ops::rmsnorm_backward(dx, true, param_at(grad, p.in_norm, {d.H}), dxn, x,
                        param_view(m, p.in_norm, {d.H}), act_of(a.rstd1, {d.N}));
}

}  // namespace topk
