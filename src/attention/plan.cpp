#include "attention/plan.h"

#include <cmath>

namespace topk {

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::automatic: return "automatic";
    case Backend::ref: return "ref";
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "?";
}

void no_backend(const char* op, Backend b) {
  if (b == Backend::cuda) {
#ifdef TOPK_HAVE_CUDA
    throw Error(detail::format_error("%s: the CUDA backend has no kernel for this op yet; "
                                     "run it on CPU tensors", op));
#else
    throw Error(detail::format_error("%s: this build of topk has no CUDA backend "
                                     "(nvcc was not found at configure time)", op));
#endif
  }
  throw Error(detail::format_error("%s: no %s backend", op, backend_name(b)));
}

void check_dtype(const char* op, const char* name, const TensorView& t, DType want) {
  TOPK_CHECK(t.dtype == want, "%s: %s must be %s, got %s", op, name, dtype_name(want),
             t.str().c_str());
}

void check_tensor(const char* op, const char* name, const TensorView& t,
                  std::initializer_list<int64_t> dims, bool is_float, bool contiguous,
                  Device device) {
  TOPK_CHECK(!t.empty() || t.numel() == 0, "%s: %s has no data", op, name);
  TOPK_CHECK(t.ndim == int(dims.size()), "%s: %s must have %zu dims, got %s", op, name,
             dims.size(), t.str().c_str());
  int i = 0;
  for (int64_t d : dims) {
    TOPK_CHECK(d < 0 || t.shape[i] == d, "%s: %s has size %lld in dim %d where %lld is needed (%s)",
               op, name, (long long)t.shape[i], i, (long long)d, t.str().c_str());
    i++;
  }
  if (is_float)
    TOPK_CHECK(t.dtype == DType::f32 || t.dtype == DType::bf16 || t.dtype == DType::f16,
               "%s: %s must be f32, bf16 or f16, got %s", op, name, t.str().c_str());
  if (contiguous)
    TOPK_CHECK(t.is_contiguous(), "%s: %s must be contiguous", op, name);
  else
    TOPK_CHECK(t.shape[t.ndim - 1] <= 1 || t.stride[t.ndim - 1] == 1,
               "%s: %s must have stride 1 in its last dim", op, name);
  TOPK_CHECK(t.device == device, "%s: %s is on %s but q is on %s", op, name,
             t.device == Device::cuda ? "cuda" : "cpu", device == Device::cuda ? "cuda" : "cpu");
}

Rows rows_of(const TensorView& t) {
  Rows r;
  r.data = t.data;
  r.dtype = t.dtype;
  r.sb = t.stride[0];
  r.st = t.stride[1];
  r.sh = t.stride[2];
  return r;
}

int64_t longest_keys(const Plan& plan) {
  int64_t m = 0;
  for (const SeqDesc& s : plan.seqs) m = s.S > m ? s.S : m;
  return m;
}

static std::vector<SeqDesc> make_seqs(const char* op, const Seqs& seqs, int64_t B, int64_t T,
                                      int64_t S) {
  std::vector<SeqDesc> out;
  bool packed = !seqs.cu_seqlens_q.empty() || !seqs.cu_seqlens_k.empty();
  if (packed) {
    TOPK_CHECK(B == 1, "%s: packed sequences (cu_seqlens) need batch size 1, got %lld", op,
               (long long)B);
    TOPK_CHECK(seqs.cu_seqlens_q.size() == seqs.cu_seqlens_k.size() && seqs.cu_seqlens_q.size() >= 2,
               "%s: cu_seqlens_q and cu_seqlens_k must both have B+1 >= 2 entries (got %zu and %zu)",
               op, seqs.cu_seqlens_q.size(), seqs.cu_seqlens_k.size());
    TOPK_CHECK(seqs.seqlens_k.empty(), "%s: give either seqlens_k or cu_seqlens, not both", op);
    TOPK_CHECK(seqs.seqlens_q.empty(),
               "%s: give either seqlens_q or cu_seqlens, not both (packed sequences take their "
               "query counts from cu_seqlens_q)", op);
    size_t n = seqs.cu_seqlens_q.size() - 1;
    TOPK_CHECK(seqs.cu_seqlens_q[0] == 0 && seqs.cu_seqlens_k[0] == 0,
               "%s: cu_seqlens must start at 0", op);
    for (size_t b = 0; b < n; b++) {
      int32_t q0 = seqs.cu_seqlens_q[b], q1 = seqs.cu_seqlens_q[b + 1];
      int32_t k0 = seqs.cu_seqlens_k[b], k1 = seqs.cu_seqlens_k[b + 1];
      TOPK_CHECK(q1 >= q0 && k1 >= k0, "%s: cu_seqlens must not decrease (sequence %zu)", op, b);
      TOPK_CHECK(q1 <= T && k1 <= S,
                 "%s: cu_seqlens reach row %d of q / %d of k, past their %lld / %lld rows", op,
                 q1, k1, (long long)T, (long long)S);
      out.push_back({0, q0, q1 - q0, k0, k1 - k0, (k1 - k0) - (q1 - q0)});
    }
  } else {
    TOPK_CHECK(seqs.seqlens_k.empty() || int64_t(seqs.seqlens_k.size()) == B,
               "%s: seqlens_k has %zu entries for batch size %lld", op, seqs.seqlens_k.size(),
               (long long)B);
    TOPK_CHECK(seqs.seqlens_q.empty() || int64_t(seqs.seqlens_q.size()) == B,
               "%s: seqlens_q has %zu entries for batch size %lld", op, seqs.seqlens_q.size(),
               (long long)B);
    for (int64_t b = 0; b < B; b++) {
      int32_t sb = seqs.seqlens_k.empty() ? int32_t(S) : seqs.seqlens_k[b];
      TOPK_CHECK(sb >= 0 && sb <= S, "%s: seqlens_k[%lld] = %d is outside [0, %lld]", op,
                 (long long)b, sb, (long long)S);
      int32_t tb = seqs.seqlens_q.empty() ? int32_t(T) : seqs.seqlens_q[b];
      TOPK_CHECK(tb >= 0 && tb <= T, "%s: seqlens_q[%lld] = %d is outside [0, %lld]", op,
                 (long long)b, tb, (long long)T);
      out.push_back({int32_t(b), 0, tb, 0, sb, sb - tb});
    }
  }
  if (!seqs.q_pos.empty()) {
    TOPK_CHECK(seqs.q_pos.size() == out.size(), "%s: q_pos has %zu entries for %zu sequences",
               op, seqs.q_pos.size(), out.size());
    for (size_t b = 0; b < out.size(); b++) {
      TOPK_CHECK(seqs.q_pos[b] >= 0, "%s: q_pos[%zu] = %d is negative", op, b, seqs.q_pos[b]);
      out[b].q_pos = seqs.q_pos[b];
    }
  }
  return out;
}

Plan plan_attention(const char* op, const TensorView& q, const TensorView& k,
                    const TensorView& v, const Seqs& seqs, const AttnOpts& opts) {
  Device dev = q.device;
  check_tensor(op, "q", q, {-1, -1, -1, -1}, true, false, dev);
  int64_t B = q.shape[0], T = q.shape[1], Hq = q.shape[2], D = q.shape[3];
  check_tensor(op, "k", k, {B, -1, -1, D}, true, false, dev);
  int64_t S = k.shape[1], Hkv = k.shape[2];
  if (!v.empty()) check_tensor(op, "v", v, {B, S, Hkv, D}, true, false, dev);
  TOPK_CHECK(D > 0 && Hq > 0 && Hkv > 0, "%s: empty head dims (Hq=%lld, Hkv=%lld, D=%lld)", op,
             (long long)Hq, (long long)Hkv, (long long)D);
  TOPK_CHECK(Hq % Hkv == 0, "%s: Hq = %lld is not a multiple of Hkv = %lld", op, (long long)Hq,
             (long long)Hkv);
  TOPK_CHECK(T < (1ll << 31) && S < (1ll << 31), "%s: more than 2^31 rows", op);
  TOPK_CHECK(std::isfinite(opts.scale) && opts.scale >= 0, "%s: scale %g must be finite and >= 0 (0 means 1/sqrt(D))",
             op, double(opts.scale));

  Plan plan;
  plan.seqs = make_seqs(op, seqs, B, T, S);
  AttnParams& p = plan.p;
  p.nseq = int(plan.seqs.size());
  p.seqs = plan.seqs.data();
  p.Hq = int(Hq);
  p.Hkv = int(Hkv);
  p.D = int(D);
  p.Tq = T;
  p.Smax = S;
  p.scale = opts.scale > 0 ? opts.scale : float(1.0 / std::sqrt(double(D)));
  p.causal = opts.causal;
  p.q = rows_of(q);
  p.k = rows_of(k);
  if (!v.empty()) p.v = rows_of(v);

  plan.backend = opts.backend;
  if (plan.backend == Backend::automatic) plan.backend = dev == Device::cuda ? Backend::cuda : Backend::cpu;
  bool want_cuda = plan.backend == Backend::cuda;
  TOPK_CHECK(want_cuda == (dev == Device::cuda), "%s: backend %s cannot run on %s tensors", op,
             backend_name(plan.backend), dev == Device::cuda ? "cuda" : "cpu");
  return plan;
}

}  // namespace topk
