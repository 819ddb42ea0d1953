// topk._C: the PyTorch binding of topk's attention ops. Each function takes torch tensors,
// describes them to libtopk_capi.so as views (data pointer, dtype, shape, strides: no copy) and
// runs the op into output tensors that the Python layer (topk/ops.py) allocated. Autograd,
// defaults and argument checks that need Python live there; topk checks shapes and layouts.
// Only torch's headers and the C ABI of topk_capi.h are used here, so this file builds with the
// language standard and standard-library ABI of whatever torch is installed.
#include <torch/extension.h>

#include <cstdint>
#include <string>
#include <vector>

#include "topk_capi.h"

namespace py = pybind11;

namespace {

topk_view to_view(const at::Tensor& t, const char* name) {
  topk_view v{};
  if (!t.defined()) return v;
  if (t.layout() != at::kStrided)
    throw py::value_error(std::string("topk: ") + name + " must be a dense (strided) tensor");
  switch (t.scalar_type()) {
    case at::kFloat: v.dtype = 0; break;
    case at::kBFloat16: v.dtype = 1; break;
    case at::kHalf: v.dtype = 2; break;
    case at::kInt: v.dtype = 3; break;
    default:
      throw py::value_error(std::string("topk: ") + name + " has dtype " +
                            std::string(c10::toString(t.scalar_type())) +
                            "; topk takes float32, bfloat16 or float16 (int32 for indices)");
  }
  if (t.device().is_cpu()) {
    v.device = 0;
  } else if (t.device().is_cuda()) {
    v.device = 1;
  } else {
    throw py::value_error(std::string("topk: ") + name + " is on " + t.device().str() +
                          "; topk runs on cpu and cuda tensors");
  }
  if (t.dim() > 4)
    throw py::value_error(std::string("topk: ") + name + " has " + std::to_string(t.dim()) +
                          " dims; at most 4 are supported");
  v.ndim = int32_t(t.dim());
  for (int64_t i = 0; i < t.dim(); i++) {
    v.shape[i] = t.size(i);
    v.stride[i] = t.stride(i);
  }
  v.data = t.data_ptr();
  return v;
}

// Sequence arrays: [seqlens_k, cu_seqlens_q, cu_seqlens_k, q_pos, seqlens_q], each a contiguous
// CPU int32 tensor, empty when not given.
struct Seqs {
  std::vector<at::Tensor> keep;
  topk_seqs s{};
};

Seqs seqs_of(const std::vector<at::Tensor>& a) {
  if (a.size() != 5) throw py::value_error("topk: seqs must hold 5 tensors");
  Seqs r;
  r.keep = a;
  const int32_t* p[5] = {};
  int64_t n[5] = {};
  for (int i = 0; i < 5; i++) {
    const at::Tensor& t = a[i];
    if (!t.defined() || t.numel() == 0) continue;
    if (!t.device().is_cpu() || t.scalar_type() != at::kInt || !t.is_contiguous() || t.dim() != 1)
      throw py::value_error("topk: sequence lengths must be 1-d contiguous int32 CPU tensors");
    p[i] = t.data_ptr<int32_t>();
    n[i] = t.numel();
  }
  r.s = topk_seqs{p[0], n[0], p[1], n[1], p[2], n[2], p[3], n[3], p[4], n[4]};
  return r;
}

topk_attn_opts opts_of(double scale, bool causal, int backend) {
  return topk_attn_opts{float(scale), causal ? 1 : 0, backend};
}

topk_select_opts sel_of(int k, double ratio, int min_k, bool share_group, int sink, int window) {
  topk_select_opts s{};
  s.k = k;
  s.ratio = ratio;
  s.min_k = min_k;
  s.share_group = share_group ? 1 : 0;
  s.sink = sink;
  s.window = window;
  return s;
}

void* stream_of(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

void check(int rc) {
  if (rc == 0) return;
  std::string msg = topk_capi_error();
  if (rc == 1) throw py::value_error(msg);
  throw std::runtime_error(msg);
}

// Runs the C call; on CPU tensors without the GIL (the views and arrays are built before), so
// that other Python threads run meanwhile. CUDA calls keep it: topk's CUDA backend keeps
// per-process state (workspaces, cached tables) that one host thread may drive at a time, and
// the GIL serialises the Python threads (and autograd's device threads) that reach it.
template <class F>
void run(const topk_view& first, F&& f) {
  int rc;
  if (first.device == 0) {
    py::gil_scoped_release nogil;
    rc = f();
  } else {
    rc = f();
  }
  check(rc);
}

void attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const std::vector<at::Tensor>& seqs, double scale, bool causal, int backend,
                       const at::Tensor& o, const at::Tensor& lse, int64_t stream) {
  topk_view vq = to_view(q, "q"), vk = to_view(k, "k"), vv = to_view(v, "v"),
            vo = to_view(o, "o"), vl = to_view(lse, "lse");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(scale, causal, backend);
  run(vq, [&] { return topk_capi_attention_forward(&vq, &vk, &vv, &s.s, &op, &vo, &vl, stream_of(stream)); });
}

void attention_backward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const at::Tensor& o, const at::Tensor& lse, const at::Tensor& dout,
                        const std::vector<at::Tensor>& seqs, double scale, bool causal, int backend,
                        const at::Tensor& dq, const at::Tensor& dk, const at::Tensor& dv,
                        int64_t stream) {
  topk_view vq = to_view(q, "q"), vk = to_view(k, "k"), vv = to_view(v, "v"),
            vo = to_view(o, "o"), vl = to_view(lse, "lse"), vd = to_view(dout, "dout"),
            gq = to_view(dq, "dq"), gk = to_view(dk, "dk"), gv = to_view(dv, "dv");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(scale, causal, backend);
  run(vq, [&] {
    return topk_capi_attention_backward(&vq, &vk, &vv, &vo, &vl, &vd, &s.s, &op, &gq, &gk, &gv,
                                        stream_of(stream));
  });
}

void attention_scores(const at::Tensor& q, const at::Tensor& k, const std::vector<at::Tensor>& seqs,
                      double scale, bool causal, int backend, const at::Tensor& scores,
                      int64_t stream) {
  topk_view vq = to_view(q, "q"), vk = to_view(k, "k"), vs = to_view(scores, "scores");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(scale, causal, backend);
  run(vq, [&] { return topk_capi_attention_scores(&vq, &vk, &s.s, &op, &vs, stream_of(stream)); });
}

void topk_select(const at::Tensor& scores, const std::vector<at::Tensor>& seqs, bool causal,
                 int backend, int k, double ratio, int min_k, bool share_group, int sink,
                 int window, const at::Tensor& indices, int64_t stream) {
  topk_view vs = to_view(scores, "scores"), vi = to_view(indices, "indices");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(0, causal, backend);
  topk_select_opts sel = sel_of(k, ratio, min_k, share_group, sink, window);
  run(vs, [&] { return topk_capi_topk_select(&vs, &s.s, &op, &sel, &vi, stream_of(stream)); });
}

void sparse_attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& indices, const std::vector<at::Tensor>& seqs,
                              double scale, int backend, const at::Tensor& o, const at::Tensor& lse,
                              int64_t stream) {
  topk_view vq = to_view(q, "q"), vk = to_view(k, "k"), vv = to_view(v, "v"),
            vi = to_view(indices, "indices"), vo = to_view(o, "o"), vl = to_view(lse, "lse");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(scale, false, backend);
  run(vq, [&] {
    return topk_capi_sparse_attention_forward(&vq, &vk, &vv, &vi, &s.s, &op, &vo, &vl, stream_of(stream));
  });
}

void sparse_attention_backward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& indices, const at::Tensor& o, const at::Tensor& lse,
                               const at::Tensor& dout, const std::vector<at::Tensor>& seqs,
                               double scale, int backend, const at::Tensor& dq,
                               const at::Tensor& dk, const at::Tensor& dv, int64_t stream) {
  topk_view vq = to_view(q, "q"), vk = to_view(k, "k"), vv = to_view(v, "v"),
            vi = to_view(indices, "indices"), vo = to_view(o, "o"), vl = to_view(lse, "lse"),
            vd = to_view(dout, "dout"), gq = to_view(dq, "dq"), gk = to_view(dk, "dk"),
            gv = to_view(dv, "dv");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(scale, false, backend);
  run(vq, [&] {
    return topk_capi_sparse_attention_backward(&vq, &vk, &vv, &vi, &vo, &vl, &vd, &s.s, &op, &gq,
                                               &gk, &gv, stream_of(stream));
  });
}

void topk_attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::vector<at::Tensor>& seqs, double scale, bool causal,
                            int backend, int kk, double ratio, int min_k, bool share_group,
                            int sink, int window, const at::Tensor& o, const at::Tensor& lse,
                            const at::Tensor& indices, int64_t stream) {
  topk_view vq = to_view(q, "q"), vk = to_view(k, "k"), vv = to_view(v, "v"),
            vo = to_view(o, "o"), vl = to_view(lse, "lse"), vi = to_view(indices, "indices");
  Seqs s = seqs_of(seqs);
  topk_attn_opts op = opts_of(scale, causal, backend);
  topk_select_opts sel = sel_of(kk, ratio, min_k, share_group, sink, window);
  run(vq, [&] {
    return topk_capi_topk_attention_forward(&vq, &vk, &vv, &s.s, &op, &sel, &vo, &vl, &vi,
                                            stream_of(stream));
  });
}

int64_t select_capacity(int k, double ratio, int min_k, bool share_group, int sink, int window,
                        int64_t S) {
  topk_select_opts sel = sel_of(k, ratio, min_k, share_group, sink, window);
  int64_t out = 0;
  check(topk_capi_select_capacity(&sel, S, &out));
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "topk's attention ops on torch tensors (low level; use the functions of `topk`)";
  m.def("attention_forward", &attention_forward);
  m.def("attention_backward", &attention_backward);
  m.def("attention_scores", &attention_scores);
  m.def("topk_select", &topk_select);
  m.def("sparse_attention_forward", &sparse_attention_forward);
  m.def("sparse_attention_backward", &sparse_attention_backward);
  m.def("topk_attention_forward", &topk_attention_forward);
  m.def("select_capacity", &select_capacity);
  m.def("cuda_available", [] { return topk_capi_cuda_available() != 0; });
  m.def("has_cuda_backend", [] { return topk_capi_has_cuda_backend() != 0; });
  m.def("capi_version", [] { return topk_capi_version(); });
}
