// The C ABI of python/csrc/topk_capi.h: converts its plain structs to topk's types, calls the
// op, and turns exceptions into return codes. Only the topk_capi_* symbols are exported.
#include "topk_capi.h"

#include <exception>
#include <span>
#include <string>

#include "topk/attention.h"

#define TOPK_CAPI_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

thread_local std::string g_error;

topk::TensorView view(const topk_view* v) {
  topk::TensorView t;
  if (!v || (!v->data && v->ndim == 0)) return t;
  if (v->ndim < 0 || v->ndim > 4)
    throw topk::Error("topk: a tensor has " + std::to_string(v->ndim) + " dims; at most 4 are supported");
  if (v->dtype < 0 || v->dtype > 3) throw topk::Error("topk: unknown dtype code " + std::to_string(v->dtype));
  if (v->device < 0 || v->device > 1) throw topk::Error("topk: unknown device code " + std::to_string(v->device));
  t.data = v->data;
  t.dtype = topk::DType(v->dtype);
  t.device = topk::Device(v->device);
  t.ndim = v->ndim;
  for (int i = 0; i < v->ndim; i++) {
    t.shape[i] = v->shape[i];
    t.stride[i] = v->stride[i];
  }
  return t;
}

std::span<const int32_t> span(const int32_t* p, int64_t n) {
  return p && n > 0 ? std::span<const int32_t>(p, size_t(n)) : std::span<const int32_t>();
}

topk::Seqs seqs_of(const topk_seqs* s) {
  topk::Seqs r;
  if (!s) return r;
  r.seqlens_k = span(s->seqlens_k, s->n_seqlens_k);
  r.cu_seqlens_q = span(s->cu_seqlens_q, s->n_cu_seqlens_q);
  r.cu_seqlens_k = span(s->cu_seqlens_k, s->n_cu_seqlens_k);
  r.q_pos = span(s->q_pos, s->n_q_pos);
  r.seqlens_q = span(s->seqlens_q, s->n_seqlens_q);
  return r;
}

topk::AttnOpts opts_of(const topk_attn_opts* o) {
  topk::AttnOpts r;
  if (!o) return r;
  r.scale = o->scale;
  r.causal = o->causal != 0;
  if (o->backend < 0 || o->backend > 3) throw topk::Error("topk: unknown backend code " + std::to_string(o->backend));
  r.backend = topk::Backend(o->backend);
  return r;
}

topk::SelectOpts sel_of(const topk_select_opts* s) {
  topk::SelectOpts r;
  if (!s) return r;
  r.k = s->k;
  r.ratio = s->ratio;
  r.min_k = s->min_k;
  r.share_group = s->share_group != 0;
  r.sink = s->sink;
  r.window = s->window;
  return r;
}

// Runs f with topk's CUDA stream set to `stream`, restoring the caller's afterwards.
template <class F>
int guarded(void* stream, F&& f) {
  void* prev = topk::cuda_stream();
  topk::set_cuda_stream(stream);
  int rc = 0;
  try {
    f();
  } catch (const topk::Error& e) {
    g_error = e.what();
    rc = 1;
  } catch (const std::exception& e) {
    g_error = e.what();
    rc = 2;
  } catch (...) {
    g_error = "topk: unknown exception";
    rc = 2;
  }
  topk::set_cuda_stream(prev);
  return rc;
}

}  // namespace

TOPK_CAPI_EXPORT int topk_capi_attention_forward(const topk_view* q, const topk_view* k,
                                                 const topk_view* v, const topk_seqs* seqs,
                                                 const topk_attn_opts* opts, const topk_view* o,
                                                 const topk_view* lse, void* stream) {
  return guarded(stream, [&] {
    topk::attention_forward(view(q), view(k), view(v), seqs_of(seqs), opts_of(opts), view(o), view(lse));
  });
}

TOPK_CAPI_EXPORT int topk_capi_attention_backward(const topk_view* q, const topk_view* k,
                                                  const topk_view* v, const topk_view* o,
                                                  const topk_view* lse, const topk_view* dout,
                                                  const topk_seqs* seqs, const topk_attn_opts* opts,
                                                  const topk_view* dq, const topk_view* dk,
                                                  const topk_view* dv, void* stream) {
  return guarded(stream, [&] {
    topk::attention_backward(view(q), view(k), view(v), view(o), view(lse), view(dout), seqs_of(seqs),
                             opts_of(opts), view(dq), view(dk), view(dv));
  });
}

TOPK_CAPI_EXPORT int topk_capi_attention_scores(const topk_view* q, const topk_view* k,
                                                const topk_seqs* seqs, const topk_attn_opts* opts,
                                                const topk_view* scores, void* stream) {
  return guarded(stream, [&] {
    topk::attention_scores(view(q), view(k), seqs_of(seqs), opts_of(opts), view(scores));
  });
}

TOPK_CAPI_EXPORT int topk_capi_topk_select(const topk_view* scores, const topk_seqs* seqs,
                                           const topk_attn_opts* opts, const topk_select_opts* sel,
                                           const topk_view* indices, void* stream) {
  return guarded(stream, [&] {
    topk::topk_select(view(scores), seqs_of(seqs), opts_of(opts), sel_of(sel), view(indices));
  });
}

TOPK_CAPI_EXPORT int topk_capi_sparse_attention_forward(const topk_view* q, const topk_view* k,
                                                        const topk_view* v, const topk_view* indices,
                                                        const topk_seqs* seqs,
                                                        const topk_attn_opts* opts, const topk_view* o,
                                                        const topk_view* lse, void* stream) {
  return guarded(stream, [&] {
    topk::sparse_attention_forward(view(q), view(k), view(v), view(indices), seqs_of(seqs),
                                   opts_of(opts), view(o), view(lse));
  });
}

TOPK_CAPI_EXPORT int topk_capi_sparse_attention_backward(
    const topk_view* q, const topk_view* k, const topk_view* v, const topk_view* indices,
    const topk_view* o, const topk_view* lse, const topk_view* dout, const topk_seqs* seqs,
    const topk_attn_opts* opts, const topk_view* dq, const topk_view* dk, const topk_view* dv,
    void* stream) {
  return guarded(stream, [&] {
    topk::sparse_attention_backward(view(q), view(k), view(v), view(indices), view(o), view(lse),
                                    view(dout), seqs_of(seqs), opts_of(opts), view(dq), view(dk),
                                    view(dv));
  });
}

TOPK_CAPI_EXPORT int topk_capi_topk_attention_forward(const topk_view* q, const topk_view* k,
                                                      const topk_view* v, const topk_seqs* seqs,
                                                      const topk_attn_opts* opts,
                                                      const topk_select_opts* sel, const topk_view* o,
                                                      const topk_view* lse, const topk_view* indices,
                                                      void* stream) {
  return guarded(stream, [&] {
    topk::topk_attention_forward(view(q), view(k), view(v), seqs_of(seqs), opts_of(opts),
                                 sel_of(sel), view(o), view(lse), view(indices));
  });
}

TOPK_CAPI_EXPORT int topk_capi_select_capacity(const topk_select_opts* sel, int64_t S, int64_t* out) {
  return guarded(topk::cuda_stream(), [&] { *out = topk::select_capacity(sel_of(sel), S); });
}

TOPK_CAPI_EXPORT int topk_capi_cuda_available(void) {
  try {
    return topk::cuda_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

TOPK_CAPI_EXPORT int topk_capi_has_cuda_backend(void) {
#ifdef TOPK_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}

TOPK_CAPI_EXPORT int topk_capi_version(void) { return TOPK_CAPI_VERSION; }

TOPK_CAPI_EXPORT const char* topk_capi_error(void) { return g_error.c_str(); }
