// Lightning Indexer ops: validate -> Params -> backend (the only switch), and the indexer
// attention composed of indexer_scores, topk_select and sparse_attention_forward.
#include <vector>

#include "attention/approx.h"
#include "attention/plan.h"
#include "topk/approx.h"

namespace topk {

namespace {

// ki as the float-tensor checks see it: FP8 keys pass them as if 16-bit (the attention plan
// knows float dtypes only); plan_indexer marks them FP8 again in the Params.
TensorView keys_for_checks(const TensorView& ki) {
  TensorView kp = ki;
  if (kp.dtype == DType::f8e4m3) kp.dtype = DType::bf16;
  return kp;
}

// qi [B, T, HI, dI] and ki [B, S, 1, dI] planned as an attention with one KV head; ki_scale,
// the scales of FP8 keys, must come with them and only with them.
Plan plan_indexer(const char* op, const TensorView& qi, const TensorView& ki,
                  const TensorView& ki_scale, const Seqs& seqs, const AttnOpts& opts,
                  IndexerParams& ip) {
  TOPK_CHECK(ki.ndim != 4 || ki.shape[2] == 1, "%s: ki must hold one key per token "
             "([B, S, 1, dI]), got %s", op, ki.str().c_str());
  const bool fp8 = ki.dtype == DType::f8e4m3;
  Plan plan = plan_attention(op, qi, keys_for_checks(ki), TensorView{}, seqs, opts);
  if (!fp8) {
    TOPK_CHECK(ki_scale.empty(), "%s: ki_scale is given but ki is %s; scales go with f8e4m3 keys "
               "only", op, ki.str().c_str());
    return plan;
  }
  TOPK_CHECK(!ki_scale.empty(), "%s: ki %s is f8e4m3 and needs ki_scale [B, S] f32 (from "
             "indexer_quantize_keys)", op, ki.str().c_str());
  check_tensor(op, "ki_scale", ki_scale, {ki.shape[0], ki.shape[1]}, false, false, qi.device);
  check_dtype(op, "ki_scale", ki_scale, DType::f32);
  plan.p.k.dtype = DType::f8e4m3;
  ip.kscale = ki_scale.ptr<float>();
  ip.kscale_sb = ki_scale.stride[0];
  return plan;
}

void check_weights(const char* op, const TensorView& w, const TensorView& qi) {
  check_tensor(op, "w", w, {qi.shape[0], qi.shape[1], qi.shape[2]}, false, true, qi.device);
  check_dtype(op, "w", w, DType::f32);
}

// A grow-only buffer per device for the intermediate results of indexer_attention_forward.
Buffer& cached(int slot, Device dev, DType dt, int64_t n) {
  thread_local Buffer bufs[2][2];
  Buffer& b = bufs[slot][dev == Device::cuda ? 1 : 0];
  if (b.view().empty() || b.view().dtype != dt || b.numel() < n) b = Buffer(dt, {n > 0 ? n : 1}, dev);
  return b;
}

}  // namespace

void indexer_scores(const TensorView& qi, const TensorView& w, const TensorView& ki,
                    const Seqs& seqs, const AttnOpts& opts, const TensorView& scores) {
  indexer_scores(qi, w, ki, TensorView{}, seqs, opts, scores);
}

void indexer_scores(const TensorView& qi, const TensorView& w, const TensorView& ki,
                    const TensorView& ki_scale, const Seqs& seqs, const AttnOpts& opts,
                    const TensorView& scores) {
  const char* op = "indexer_scores";
  IndexerParams ip;
  Plan plan = plan_indexer(op, qi, ki, ki_scale, seqs, opts, ip);
  check_weights(op, w, qi);
  check_tensor(op, "scores", scores, {qi.shape[0], qi.shape[1], 1, ki.shape[1]}, false, true,
               qi.device);
  check_dtype(op, "scores", scores, DType::f32);
  ip.a = plan.p;
  ip.w = w.ptr<float>();
  ip.scores = scores.ptr<float>();
  switch (plan.backend) {
    case Backend::ref: ref::indexer_scores(ip); break;
    case Backend::cpu: cpu::indexer_scores(ip); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::indexer_scores(ip)); break;
    default: no_backend(op, plan.backend);
  }
}

void indexer_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                               const TensorView& qi, const TensorView& w, const TensorView& ki,
                               const Seqs& seqs, const AttnOpts& opts, const SelectOpts& sel,
                               const TensorView& o, const TensorView& lse,
                               const TensorView& indices) {
  indexer_attention_forward(q, k, v, qi, w, ki, TensorView{}, seqs, opts, sel, o, lse, indices);
}

void indexer_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                               const TensorView& qi, const TensorView& w, const TensorView& ki,
                               const TensorView& ki_scale, const Seqs& seqs, const AttnOpts& opts,
                               const SelectOpts& sel, const TensorView& o, const TensorView& lse,
                               const TensorView& indices) {
  const char* op = "indexer_attention_forward";
  Plan plan = plan_attention(op, q, k, v, seqs, opts);
  TOPK_CHECK(!v.empty(), "%s: v is missing", op);
  TOPK_CHECK(!sel.share_group, "%s: the indexer's selection is shared by every head already; "
             "share_group does not apply", op);
  check_tensor(op, "qi", qi, {q.shape[0], q.shape[1], -1, -1}, true, false, q.device);
  check_tensor(op, "ki", keys_for_checks(ki), {q.shape[0], k.shape[1], 1, qi.shape[3]}, true,
               false, q.device);
  check_tensor(op, "indices", indices, {q.shape[0], q.shape[1], k.shape[2], -1}, false, true,
               q.device);
  check_dtype(op, "indices", indices, DType::i32);
  const int64_t B = q.shape[0], T = q.shape[1], S = k.shape[1], Hkv = k.shape[2];
  const int64_t K = indices.shape[3];
  TOPK_CHECK(K >= select_capacity(sel, longest_keys(plan)), "%s: indices have %lld columns; this "
             "budget needs %lld", op, (long long)K,
             (long long)select_capacity(sel, longest_keys(plan)));
  AttnOpts io = opts;
  io.scale = 0;
  const Device dev = q.device;
  Buffer& sb = cached(0, dev, DType::f32, B * T * S);
  Buffer& ib = cached(1, dev, DType::i32, B * T * K);
  TensorView sc = make_view(sb.view().data, DType::f32, {B, T, 1, S}, dev);
  TensorView one = make_view(ib.view().data, DType::i32, {B, T, 1, K}, dev);
  indexer_scores(qi, w, ki, ki_scale, seqs, io, sc);
  topk_select(sc, seqs, io, sel, one);
  // The one row of each query, copied to each KV head's row: the sparse attention reads a row
  // per head or per group.
  if (dev == Device::cuda) {
    TOPK_CUDA_DISPATCH(op, cuda::broadcast_rows(one.ptr<int32_t>(), indices.ptr<int32_t>(), B * T,
                                                int(Hkv), K));
  } else {
    const int32_t* src = one.ptr<int32_t>();
    int32_t* dst = indices.ptr<int32_t>();
    for (int64_t r = 0; r < B * T; r++)
      for (int64_t h = 0; h < Hkv; h++)
        std::copy(src + r * K, src + (r + 1) * K, dst + (r * Hkv + h) * K);
  }
  sparse_attention_forward(q, k, v, indices, seqs, opts, o, lse);
}

void indexer_quantize_keys(const TensorView& ki, const TensorView& ki8, const TensorView& ki_scale) {
  const char* op = "indexer_quantize_keys";
  const Device dev = ki.device;
  check_tensor(op, "ki", ki, {-1, -1, 1, -1}, true, false, dev);
  const int64_t B = ki.shape[0], S = ki.shape[1], dI = ki.shape[3];
  TOPK_CHECK(dI > 0 && dI < (1 << 20), "%s: ki %s: dI must be in [1, 2^20)", op, ki.str().c_str());
  check_tensor(op, "ki8", ki8, {B, S, 1, dI}, false, false, dev);
  check_dtype(op, "ki8", ki8, DType::f8e4m3);
  check_tensor(op, "ki_scale", ki_scale, {B, S}, false, false, dev);
  check_dtype(op, "ki_scale", ki_scale, DType::f32);
  QuantizeKeysParams qp;
  qp.x = rows_of(ki);
  qp.q8 = ki8.ptr<uint8_t>();
  qp.q8_sb = ki8.stride[0];
  qp.q8_st = ki8.stride[1];
  qp.scale = ki_scale.ptr<float>();
  qp.scale_sb = ki_scale.stride[0];
  qp.scale_st = ki_scale.stride[1];
  qp.B = B;
  qp.S = S;
  qp.dI = int(dI);
  if (B * S == 0) return;
  if (dev == Device::cuda) {
    TOPK_CUDA_DISPATCH(op, cuda::quantize_keys(qp));
  } else {
    cpu::quantize_keys(qp);
  }
}

void indexer_loss(const TensorView& q, const TensorView& k, const TensorView& lse,
                  const TensorView& qi, const TensorView& w, const TensorView& ki,
                  const TensorView& indices, const Seqs& seqs, const AttnOpts& opts,
                  const TensorView& loss, const TensorView& dqi, const TensorView& dw,
                  const TensorView& dki) {
  const char* op = "indexer_loss";
  Plan plan = plan_attention(op, q, k, TensorView{}, seqs, opts);
  const Device dev = q.device;
  const int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], S = k.shape[1];
  check_tensor(op, "lse", lse, {B, T, Hq}, false, true, dev);
  check_dtype(op, "lse", lse, DType::f32);
  check_tensor(op, "qi", qi, {B, T, -1, -1}, true, false, dev);
  const int64_t HI = qi.shape[2], dI = qi.shape[3];
  TOPK_CHECK(HI > 0 && dI > 0, "%s: qi %s has no heads", op, qi.str().c_str());
  check_tensor(op, "ki", ki, {B, S, 1, dI}, true, false, dev);
  check_weights(op, w, qi);
  check_tensor(op, "loss", loss, {B, T}, false, true, dev);
  check_dtype(op, "loss", loss, DType::f32);
  IndexerLossParams lp;
  lp.a = plan.p;
  lp.a.lse = lse.ptr<float>();
  lp.qi = rows_of(qi);
  lp.ki = rows_of(ki);
  lp.HI = int(HI);
  lp.dI = int(dI);
  lp.B = B;
  lp.w = w.ptr<float>();
  lp.loss = loss.ptr<float>();
  if (!indices.empty()) {
    check_tensor(op, "indices", indices, {B, T, 1, -1}, false, true, dev);
    check_dtype(op, "indices", indices, DType::i32);
    lp.idx = indices.ptr<int32_t>();
    lp.K = indices.shape[3];
  }
  const int given = int(!dqi.empty()) + int(!dw.empty()) + int(!dki.empty());
  TOPK_CHECK(given == 0 || given == 3, "%s: give all of dqi, dw and dki, or none", op);
  if (given == 3) {
    check_tensor(op, "dqi", dqi, {B, T, HI, dI}, false, true, dev);
    check_tensor(op, "dw", dw, {B, T, HI}, false, true, dev);
    check_tensor(op, "dki", dki, {B, S, 1, dI}, false, true, dev);
    for (const TensorView* t : {&dqi, &dw, &dki}) check_dtype(op, "gradient", *t, DType::f32);
    lp.dqi = dqi.ptr<float>();
    lp.dw = dw.ptr<float>();
    lp.dki = dki.ptr<float>();
  }
  switch (plan.backend) {
    case Backend::ref: ref::indexer_loss(lp); break;
    case Backend::cpu: cpu::indexer_loss(lp); break;
    case Backend::cuda: TOPK_CUDA_DISPATCH(op, cuda::indexer_loss(lp)); break;
    default: no_backend(op, plan.backend);
  }
}

}  // namespace topk
