#include "model/indexer.h"

#include <cmath>

#include "model/ops.h"
#include "model/views.h"
#include "topk/approx.h"

namespace topk {

namespace {

constexpr float kNormEps = 1e-6f;  // DeepSeek's LayerNorm of the indexer keys

// Score rows a selection call may hold at once (f32 elements): keeps the scores of long packed
// sequences to 256 MiB.
constexpr int64_t kScoreBudget = int64_t(64) << 20;

}  // namespace

void indexer_project(const Model& m, int l, const TensorView& xn1, const TensorView& pos,
                     IndexerActs& a, bool queries) {
  const ModelConfig& c = m.cfg;
  const LayerParams& p = m.layer[size_t(l)];
  const int64_t N = xn1.shape[0], H = c.hidden, HI = c.index_n_heads, dI = c.index_head_dim;
  const Device dev = xn1.device;
  const DType cd = m.compute();
  TensorView kraw = scratch(a.kraw, cd, {N, dI}, dev);
  ops::gemm(kraw, xn1, false, matrix_view(m, p.ix_k, dI, H), true);
  TensorView k = scratch(a.k, cd, {N, dI}, dev);
  ops::layernorm_forward(k, scratch(a.mean, DType::f32, {N}, dev),
                         scratch(a.rstd, DType::f32, {N}, dev), kraw,
                         param_view(m, p.ix_norm, {dI}), param_view(m, p.ix_norm_b, {dI}), kNormEps);
  ops::rope(reshape(k, {N, 1, dI}), pos, m.index_inv_freq, false);
  if (!queries) return;
  TensorView q = scratch(a.q, cd, {N, HI * dI}, dev);
  ops::gemm(q, xn1, false, matrix_view(m, p.ix_q, HI * dI, H), true);
  ops::rope(reshape(q, {N, HI, dI}), pos, m.index_inv_freq, false);
  TensorView w = scratch(a.w, DType::f32, {N, HI}, dev);
  ops::gemm(w, xn1, false, matrix_view(m, p.ix_w, HI, H), true);
  // DeepSeek's weights_proj(x) * HI^-1/2 times the softmax scale dI^-1/2.
  ops::scale(w, float(1.0 / std::sqrt(double(HI) * double(dI))));
}

SelectOpts indexer_select_opts(const Model& m, const AttnPolicy& pol) {
  TOPK_CHECK(m.cfg.has_indexer(), "policy '%s' needs a model with a Lightning Indexer "
             "(index_n_heads, index_head_dim and index_topk in config.json; `topk train` adds one "
             "with the run file's \"indexer\" key)", policy_str(pol).c_str());
  SelectOpts s;
  s.k = pol.sel.k > 0 ? pol.sel.k : m.cfg.index_topk;
  return s;
}

void broadcast_rows(const TensorView& src, int64_t H, const TensorView& dst, Buffer& map) {
  const int64_t R = src.shape[0], K = src.numel() / std::max<int64_t>(R, 1);
  std::vector<int32_t> h(static_cast<size_t>(R * H));
  for (int64_t r = 0; r < R * H; r++) h[size_t(r)] = int32_t(r / H);
  TensorView mv = scratch(map, DType::i32, {R * H}, src.device);
  copy(mv, make_view(h.data(), DType::i32, {R * H}));
  ops::gather_rows(reshape(dst, {R * H, K}), reshape(src, {R, K}), mv);
}

void indexer_select_packed(const Model& m, std::span<const int32_t> cu, const SelectOpts& sel,
                           IndexerActs& a, Buffer& idx) {
  const ModelConfig& c = m.cfg;
  const int64_t HI = c.index_n_heads, dI = c.index_head_dim, N = cu.back();
  const Device dev = a.q.view().device;
  int64_t longest = 0;
  for (size_t i = 0; i + 1 < cu.size(); i++) longest = std::max<int64_t>(longest, cu[i + 1] - cu[i]);
  a.K = select_capacity(sel, longest);
  TensorView one = scratch(a.one, DType::i32, {N, a.K}, dev);
  AttnOpts opts;
  opts.causal = true;
  for (size_t b = 0; b + 1 < cu.size(); b++) {
    const int64_t r0 = cu[b], T = cu[b + 1] - cu[b];
    // Rows [t0, t1) of the sequence against its keys 0..t1-1, at query position t0.
    for (int64_t t0 = 0; t0 < T;) {
      int64_t t1 = T;
      while (t1 > t0 + 1 && (t1 - t0) * t1 > kScoreBudget) t1 = t0 + (t1 - t0 + 1) / 2;
      const int64_t nt = t1 - t0;
      const int32_t qp = int32_t(t0);
      Seqs seqs;
      seqs.q_pos = std::span<const int32_t>(&qp, 1);
      TensorView qv = view_at(a.q.view(), (r0 + t0) * HI * dI, {1, nt, HI, dI});
      TensorView wv = view_at(a.w.view(), (r0 + t0) * HI, {1, nt, HI});
      TensorView kv = view_at(a.k.view(), r0 * dI, {1, t1, 1, dI});
      TensorView sc = scratch(a.scores, DType::f32, {1, nt, 1, t1}, dev);
      indexer_scores(qv, wv, kv, seqs, opts, sc);
      topk_select(sc, seqs, opts, sel, view_at(one, (r0 + t0) * a.K, {1, nt, 1, a.K}));
      t0 = t1;
    }
  }
  const int64_t Hkv = c.kv_heads;
  TensorView iv = scratch(idx, DType::i32, {1, N, Hkv, a.K}, dev);
  broadcast_rows(one, Hkv, iv, a.rows);
}

void indexer_train(const Model& m, int l, const TensorView& xn1, const TensorView& pos,
                   std::span<const int32_t> cu, const TensorView& q, const TensorView& k,
                   const TensorView& lse, IndexerActs& a, IndexerTrain& tr) {
  const ModelConfig& c = m.cfg;
  const LayerParams& p = m.layer[size_t(l)];
  const int64_t N = xn1.shape[0], H = c.hidden, HI = c.index_n_heads, dI = c.index_head_dim;
  const Device dev = xn1.device;
  Seqs seqs;
  seqs.cu_seqlens_q = cu;
  seqs.cu_seqlens_k = cu;
  AttnOpts opts;
  opts.causal = true;
  TensorView qi = view_at(a.q.view(), 0, {1, N, HI, dI});
  TensorView w = view_at(a.w.view(), 0, {1, N, HI});
  TensorView ki = view_at(a.k.view(), 0, {1, N, 1, dI});
  TensorView list = tr.sparse ? view_at(a.one.view(), 0, {1, N, 1, a.K}) : TensorView{};
  TensorView loss = scratch(a.loss, DType::f32, {1, N}, dev);
  TensorView dq = scratch(a.dq, DType::f32, {1, N, HI, dI}, dev);
  TensorView dw = scratch(a.dw, DType::f32, {1, N, HI}, dev);
  TensorView dk = scratch(a.dk, DType::f32, {1, N, 1, dI}, dev);
  indexer_loss(q, k, lse, qi, w, ki, list, seqs, opts, loss, dq, dw, dk);
  std::vector<float> lh(static_cast<size_t>(N));
  copy(make_view(lh.data(), DType::f32, {N}), reshape(loss, {N}));
  for (float x : lh) tr.loss += x;  // row order: the same sum on every run
  // Back through w = wraw / sqrt(HI dI), the RoPE of qi and ki, and the key's LayerNorm.
  ops::scale(dq, tr.scale);
  ops::scale(dk, tr.scale);
  ops::scale(dw, float(double(tr.scale) / std::sqrt(double(HI) * double(dI))));
  ops::rope(reshape(dq, {N, HI, dI}), pos, m.index_inv_freq, true);
  ops::rope(reshape(dk, {N, 1, dI}), pos, m.index_inv_freq, true);
  TensorView dkraw = scratch(a.dkraw, DType::f32, {N, dI}, dev);
  ops::layernorm_backward(dkraw, param_at(tr.grad, p.ix_norm, {dI}),
                          param_at(tr.grad, p.ix_norm_b, {dI}), reshape(dk, {N, dI}),
                          view_at(a.kraw.view(), 0, {N, dI}), param_view(m, p.ix_norm, {dI}),
                          view_at(a.mean.view(), 0, {N}), view_at(a.rstd.view(), 0, {N}));
  // The input is detached: only the weight gradients, no gradient into xn1.
  const DType cd = m.compute();
  ops::gemm(param_at(tr.grad, p.ix_q, {HI * dI, H}), as_compute(reshape(dq, {N, HI * dI}), cd, a.dq_c),
            true, xn1, false, 1.0f, 1.0f);
  ops::gemm(param_at(tr.grad, p.ix_k, {dI, H}), as_compute(dkraw, cd, a.dk_c), true, xn1, false,
            1.0f, 1.0f);
  ops::gemm(param_at(tr.grad, p.ix_w, {HI, H}), as_compute(reshape(dw, {N, HI}), cd, a.dw_c), true,
            xn1, false, 1.0f, 1.0f);
}

}  // namespace topk
