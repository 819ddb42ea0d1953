/* A C ABI over topk's attention ops (include/topk/attention.h), for language bindings: the
 * PyTorch extension (python/csrc/binding.cpp) calls it. No C++ type crosses it, so a binding
 * built with another compiler, standard library ABI or language standard links it safely.
 * Every op returns 0 on success, 1 for a caller error (topk::Error: bad shape, dtype, option),
 * 2 for any other failure; topk_capi_error() then holds the message (per thread).
 * The meaning of every op and argument is that of attention.h and docs/semantics.md. */
#ifndef TOPK_CAPI_H
#define TOPK_CAPI_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TOPK_CAPI_VERSION 1

/* dtype: 0 f32, 1 bf16, 2 f16, 3 i32 (topk::DType); device: 0 cpu, 1 cuda. A view with
 * data == NULL and ndim == 0 means "not given". Strides are in elements. */
typedef struct topk_view {
  void* data;
  int32_t dtype;
  int32_t device;
  int32_t ndim;
  int32_t reserved;
  int64_t shape[4];
  int64_t stride[4];
} topk_view;

/* Host arrays of topk::Seqs; NULL/0 for one not given. */
typedef struct topk_seqs {
  const int32_t* seqlens_k;
  int64_t n_seqlens_k;
  const int32_t* cu_seqlens_q;
  int64_t n_cu_seqlens_q;
  const int32_t* cu_seqlens_k;
  int64_t n_cu_seqlens_k;
  const int32_t* q_pos;
  int64_t n_q_pos;
  const int32_t* seqlens_q;
  int64_t n_seqlens_q;
} topk_seqs;

typedef struct topk_attn_opts {
  float scale;     /* 0: 1/sqrt(D) */
  int32_t causal;  /* 0 or 1 */
  int32_t backend; /* 0 automatic, 1 ref, 2 cpu, 3 cuda */
} topk_attn_opts;

typedef struct topk_select_opts {
  int32_t k;
  int32_t min_k;
  double ratio;
  int32_t share_group;
  int32_t sink;
  int32_t window;
  int32_t reserved;
} topk_select_opts;

/* `stream` is the cudaStream_t for CUDA tensors (NULL: the legacy default stream); the call
 * sets topk::set_cuda_stream for its duration and restores the previous one. */
int topk_capi_attention_forward(const topk_view* q, const topk_view* k, const topk_view* v,
                                const topk_seqs* seqs, const topk_attn_opts* opts,
                                const topk_view* o, const topk_view* lse, void* stream);
int topk_capi_attention_backward(const topk_view* q, const topk_view* k, const topk_view* v,
                                 const topk_view* o, const topk_view* lse, const topk_view* dout,
                                 const topk_seqs* seqs, const topk_attn_opts* opts,
                                 const topk_view* dq, const topk_view* dk, const topk_view* dv,
                                 void* stream);
int topk_capi_attention_scores(const topk_view* q, const topk_view* k, const topk_seqs* seqs,
                               const topk_attn_opts* opts, const topk_view* scores, void* stream);
int topk_capi_topk_select(const topk_view* scores, const topk_seqs* seqs,
                          const topk_attn_opts* opts, const topk_select_opts* sel,
                          const topk_view* indices, void* stream);
int topk_capi_sparse_attention_forward(const topk_view* q, const topk_view* k, const topk_view* v,
                                       const topk_view* indices, const topk_seqs* seqs,
                                       const topk_attn_opts* opts, const topk_view* o,
                                       const topk_view* lse, void* stream);
int topk_capi_sparse_attention_backward(const topk_view* q, const topk_view* k,
                                        const topk_view* v, const topk_view* indices,
                                        const topk_view* o, const topk_view* lse,
                                        const topk_view* dout, const topk_seqs* seqs,
                                        const topk_attn_opts* opts, const topk_view* dq,
                                        const topk_view* dk, const topk_view* dv, void* stream);
int topk_capi_topk_attention_forward(const topk_view* q, const topk_view* k, const topk_view* v,
                                     const topk_seqs* seqs, const topk_attn_opts* opts,
                                     const topk_select_opts* sel, const topk_view* o,
                                     const topk_view* lse, const topk_view* indices, void* stream);
/* Columns of the indices tensor a selection over at most S keys needs (into *out). */
int topk_capi_select_capacity(const topk_select_opts* sel, int64_t S, int64_t* out);

int topk_capi_cuda_available(void); /* 1 when built with CUDA and a device is present */
int topk_capi_has_cuda_backend(void); /* 1 when built with the CUDA backend */
int topk_capi_version(void);          /* TOPK_CAPI_VERSION */
const char* topk_capi_error(void);    /* the last failure's message on this thread */

#ifdef __cplusplus
}
#endif
#endif
