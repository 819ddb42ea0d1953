// The model ops: check the tensors once, then pick the backend by device (the only switch).
#include <cstdarg>

#include "model/ops_impl.h"

namespace topk::ops {

namespace {

bool is_float(DType t) { return t == DType::f32 || t == DType::bf16; }

// Checks that every tensor is contiguous and on one device; returns that device. On the CPU
// float tensors must be f32 (the CPU engine computes in f32 throughout).
// raw: the op moves bytes (rows of any dtype), so CPU tensors need not be f32.
Device common_device(const char* op, std::initializer_list<const TensorView*> ts, bool raw = false) {
  Device dev = Device::cpu;
  bool first = true;
  for (const TensorView* t : ts) {
    if (t->empty() && t->numel() == 0 && t->ndim == 0) continue;  // an absent optional tensor
    TOPK_CHECK(t->is_contiguous(), "ops::%s: %s must be contiguous", op, t->str().c_str());
    if (first) dev = t->device, first = false;
    TOPK_CHECK(t->device == dev, "ops::%s: tensors on different devices (%s)", op, t->str().c_str());
  }
  if (dev == Device::cpu && !raw)
    for (const TensorView* t : ts)
      TOPK_CHECK(t->ndim == 0 || t->dtype == DType::f32 || t->dtype == DType::i32,
                 "ops::%s: CPU tensors must be f32, got %s", op, t->str().c_str());
  return dev;
}

void need_float(const char* op, const char* name, const TensorView& t) {
  TOPK_CHECK(is_float(t.dtype), "ops::%s: %s must be f32 or bf16, got %s", op, name,
             t.str().c_str());
}
void need(const char* op, const char* name, const TensorView& t, DType d) {
  TOPK_CHECK(t.dtype == d, "ops::%s: %s must be %s, got %s", op, name, dtype_name(d),
             t.str().c_str());
}
void need_2d(const char* op, const char* name, const TensorView& t, int64_t rows, int64_t cols) {
  TOPK_CHECK((rows < 0 || rows_of(t) == rows) && (cols < 0 || cols_of(t) == cols),
             "ops::%s: %s is %s, expected [%lld, %lld]", op, name, t.str().c_str(),
             (long long)rows, (long long)cols);
}
bool present(const TensorView& t) { return t.ndim > 0; }

#ifdef TOPK_HAVE_CUDA
#define TOPK_OPS_CALL(dev, fn, ...) \
  ((dev) == Device::cuda ? cuda::fn(__VA_ARGS__) : cpu::fn(__VA_ARGS__))
#else
#define TOPK_OPS_CALL(dev, fn, ...)                                                            \
  ((dev) == Device::cuda ? throw Error("ops::" #fn ": this build of topk has no CUDA backend") \
                         : cpu::fn(__VA_ARGS__))
#endif

}  // namespace

void gemm(const TensorView& C, const TensorView& A, bool ta, const TensorView& B, bool tb,
          float alpha, float beta) {
  const char* op = "gemm";
  Device dev = common_device(op, {&C, &A, &B});
  TOPK_CHECK(A.ndim == 2 && B.ndim == 2 && C.ndim == 2, "ops::gemm: needs 2-D tensors (%s, %s, %s)",
             A.str().c_str(), B.str().c_str(), C.str().c_str());
  int64_t M = ta ? A.shape[1] : A.shape[0], K = ta ? A.shape[0] : A.shape[1];
  int64_t K2 = tb ? B.shape[1] : B.shape[0], N = tb ? B.shape[0] : B.shape[1];
  TOPK_CHECK(K == K2 && C.shape[0] == M && C.shape[1] == N,
             "ops::gemm: %s%s x %s%s does not give %s", A.str().c_str(), ta ? "^T" : "",
             B.str().c_str(), tb ? "^T" : "", C.str().c_str());
  if (dev == Device::cuda) {
    // bf16 operands (the engine's compute dtype), or f32 ones (f32 compute, no TF32) into f32 C.
    TOPK_CHECK((A.dtype == DType::bf16 || A.dtype == DType::f32) && B.dtype == A.dtype &&
                   (A.dtype == DType::bf16 || C.dtype == DType::f32),
               "ops::gemm on CUDA: operands bf16 x bf16 or f32 x f32 (into f32), got %s x %s -> %s",
               dtype_name(A.dtype), dtype_name(B.dtype), dtype_name(C.dtype));
    need_float(op, "C", C);
    TOPK_CHECK(C.dtype == DType::f32 || beta == 0, "ops::gemm: a bf16 C needs beta = 0");
  }
  if (M == 0 || N == 0) return;
  TOPK_OPS_CALL(dev, gemm, C, A, ta, B, tb, alpha, beta);
}

void add_bias(const TensorView& y, const TensorView& b) {
  Device dev = common_device("add_bias", {&y, &b});
  need_float("add_bias", "y", y);
  need_float("add_bias", "b", b);
  TOPK_CHECK(b.numel() == cols_of(y), "ops::add_bias: b %s for y %s", b.str().c_str(),
             y.str().c_str());
  TOPK_OPS_CALL(dev, add_bias, y, b);
}

void bias_grad(const TensorView& db, const TensorView& dy) {
  Device dev = common_device("bias_grad", {&db, &dy});
  need("bias_grad", "db", db, DType::f32);
  need_float("bias_grad", "dy", dy);
  TOPK_CHECK(db.numel() == cols_of(dy), "ops::bias_grad: db %s for dy %s", db.str().c_str(),
             dy.str().c_str());
  TOPK_OPS_CALL(dev, bias_grad, db, dy);
}

void embedding_forward(const TensorView& out, const TensorView& table, const TensorView& tokens) {
  const char* op = "embedding_forward";
  Device dev = common_device(op, {&out, &table, &tokens});
  need(op, "out", out, DType::f32);
  need_float(op, "table", table);
  need(op, "tokens", tokens, DType::i32);
  need_2d(op, "out", out, tokens.numel(), cols_of(table));
  TOPK_OPS_CALL(dev, embedding_forward, out, table, tokens);
}

void embedding_backward(const TensorView& dtable, const TensorView& dout,
                        std::span<const int32_t> tokens_host) {
  const char* op = "embedding_backward";
  Device dev = common_device(op, {&dtable, &dout});
  need(op, "dtable", dtable, DType::f32);
  need(op, "dout", dout, DType::f32);
  need_2d(op, "dout", dout, int64_t(tokens_host.size()), cols_of(dtable));
  for (int32_t t : tokens_host)
    TOPK_CHECK(t >= 0 && t < rows_of(dtable), "ops::%s: token id %d outside [0, %lld)", op, t,
               (long long)rows_of(dtable));
  TOPK_OPS_CALL(dev, embedding_backward, dtable, dout, tokens_host);
}

void rmsnorm_forward(const TensorView& y, const TensorView& rstd, const TensorView& x,
                     const TensorView& w, float eps) {
  const char* op = "rmsnorm_forward";
  Device dev = common_device(op, {&y, &rstd, &x, &w});
  need_float(op, "x", x);
  need_float(op, "y", y);
  need_float(op, "w", w);
  need_2d(op, "y", y, rows_of(x), cols_of(x));
  TOPK_CHECK(w.numel() == cols_of(x), "ops::%s: w %s for x %s", op, w.str().c_str(), x.str().c_str());
  if (present(rstd)) {
    need(op, "rstd", rstd, DType::f32);
    TOPK_CHECK(rstd.numel() == rows_of(x), "ops::%s: rstd %s for x %s", op, rstd.str().c_str(),
               x.str().c_str());
  }
  TOPK_CHECK(y.data != x.data || y.dtype == x.dtype, "ops::%s: y aliases x with another dtype", op);
  TOPK_OPS_CALL(dev, rmsnorm_forward, y, rstd, x, w, eps);
}

void rmsnorm_backward(const TensorView& dx, bool accumulate, const TensorView& dw,
                      const TensorView& dy, const TensorView& x, const TensorView& w,
                      const TensorView& rstd) {
  const char* op = "rmsnorm_backward";
  Device dev = common_device(op, {&dx, &dw, &dy, &x, &w, &rstd});
  need(op, "dx", dx, DType::f32);
  need_float(op, "dy", dy);
  need_float(op, "x", x);
  need_float(op, "w", w);
  need(op, "rstd", rstd, DType::f32);
  need_2d(op, "dx", dx, rows_of(x), cols_of(x));
  need_2d(op, "dy", dy, rows_of(x), cols_of(x));
  TOPK_CHECK(w.numel() == cols_of(x) && rstd.numel() == rows_of(x),
             "ops::%s: w %s / rstd %s for x %s", op, w.str().c_str(), rstd.str().c_str(),
             x.str().c_str());
  if (present(dw)) {
    need(op, "dw", dw, DType::f32);
    TOPK_CHECK(dw.numel() == w.numel(), "ops::%s: dw %s for w %s", op, dw.str().c_str(),
               w.str().c_str());
  }
  TOPK_OPS_CALL(dev, rmsnorm_backward, dx, accumulate, dw, dy, x, w, rstd);
}

void layernorm_forward(const TensorView& y, const TensorView& mean, const TensorView& rstd,
                       const TensorView& x, const TensorView& w, const TensorView& b, float eps) {
  const char* op = "layernorm_forward";
  Device dev = common_device(op, {&y, &mean, &rstd, &x, &w, &b});
  need_float(op, "x", x);
  need_float(op, "y", y);
  need_float(op, "w", w);
  need_float(op, "b", b);
  need_2d(op, "y", y, rows_of(x), cols_of(x));
  TOPK_CHECK(w.numel() == cols_of(x) && b.numel() == cols_of(x), "ops::%s: w %s, b %s for x %s",
             op, w.str().c_str(), b.str().c_str(), x.str().c_str());
  TOPK_CHECK(present(mean) == present(rstd), "ops::%s: give both mean and rstd, or neither", op);
  if (present(rstd)) {
    need(op, "mean", mean, DType::f32);
    need(op, "rstd", rstd, DType::f32);
    TOPK_CHECK(rstd.numel() == rows_of(x) && mean.numel() == rows_of(x), "ops::%s: mean %s, "
               "rstd %s for x %s", op, mean.str().c_str(), rstd.str().c_str(), x.str().c_str());
  }
  TOPK_CHECK(y.data != x.data || y.dtype == x.dtype, "ops::%s: y aliases x with another dtype", op);
  TOPK_OPS_CALL(dev, layernorm_forward, y, mean, rstd, x, w, b, eps);
}

void layernorm_backward(const TensorView& dx, const TensorView& dw, const TensorView& db,
                        const TensorView& dy, const TensorView& x, const TensorView& w,
                        const TensorView& mean, const TensorView& rstd) {
  const char* op = "layernorm_backward";
  Device dev = common_device(op, {&dx, &dw, &db, &dy, &x, &w, &mean, &rstd});
  need(op, "dx", dx, DType::f32);
  need(op, "dw", dw, DType::f32);
  need(op, "db", db, DType::f32);
  need_float(op, "dy", dy);
  need_float(op, "x", x);
  need_float(op, "w", w);
  need(op, "mean", mean, DType::f32);
  need(op, "rstd", rstd, DType::f32);
  need_2d(op, "dx", dx, rows_of(x), cols_of(x));
  need_2d(op, "dy", dy, rows_of(x), cols_of(x));
  TOPK_CHECK(w.numel() == cols_of(x) && dw.numel() == cols_of(x) && db.numel() == cols_of(x) &&
                 mean.numel() == rows_of(x) && rstd.numel() == rows_of(x),
             "ops::%s: w %s, dw %s, db %s, mean %s, rstd %s for x %s", op, w.str().c_str(),
             dw.str().c_str(), db.str().c_str(), mean.str().c_str(), rstd.str().c_str(),
             x.str().c_str());
  TOPK_OPS_CALL(dev, layernorm_backward, dx, dw, db, dy, x, w, mean, rstd);
}

void rope(const TensorView& x, const TensorView& pos, const TensorView& inv_freq, bool inverse) {
  const char* op = "rope";
  Device dev = common_device(op, {&x, &pos, &inv_freq});
  need_float(op, "x", x);
  need(op, "pos", pos, DType::i32);
  need(op, "inv_freq", inv_freq, DType::f32);
  TOPK_CHECK(x.ndim == 3 && x.shape[2] % 2 == 0 && inv_freq.numel() == x.shape[2] / 2 &&
                 pos.numel() == x.shape[0],
             "ops::%s: x %s, pos %s, inv_freq %s (need x [N, Hh, D], pos [N], inv_freq [D/2])",
             op, x.str().c_str(), pos.str().c_str(), inv_freq.str().c_str());
  TOPK_OPS_CALL(dev, rope, x, pos, inv_freq, inverse);
}

void swiglu_forward(const TensorView& act, const TensorView& gu) {
  Device dev = common_device("swiglu_forward", {&act, &gu});
  need_float("swiglu_forward", "act", act);
  need_float("swiglu_forward", "gu", gu);
  need_2d("swiglu_forward", "gu", gu, rows_of(act), 2 * cols_of(act));
  TOPK_OPS_CALL(dev, swiglu_forward, act, gu);
}

void swiglu_backward(const TensorView& dgu, const TensorView& dact, const TensorView& gu) {
  const char* op = "swiglu_backward";
  Device dev = common_device(op, {&dgu, &dact, &gu});
  need_float(op, "dgu", dgu);
  need_float(op, "dact", dact);
  need_float(op, "gu", gu);
  need_2d(op, "gu", gu, rows_of(dact), 2 * cols_of(dact));
  need_2d(op, "dgu", dgu, rows_of(dact), 2 * cols_of(dact));
  TOPK_OPS_CALL(dev, swiglu_backward, dgu, dact, gu);
}

void cross_entropy(const TensorView& losses, const TensorView& dlogits, const TensorView& logits,
                   const TensorView& targets, const TensorView& weights, float grad_scale) {
  const char* op = "cross_entropy";
  Device dev = common_device(op, {&losses, &dlogits, &logits, &targets, &weights});
  int64_t N = rows_of(logits);
  need_float(op, "logits", logits);
  need(op, "targets", targets, DType::i32);
  need(op, "weights", weights, DType::f32);
  need(op, "losses", losses, DType::f32);
  TOPK_CHECK(logits.ndim == 2 && targets.numel() == N && weights.numel() == N && losses.numel() == N,
             "ops::%s: logits %s, targets %s, weights %s, losses %s", op, logits.str().c_str(),
             targets.str().c_str(), weights.str().c_str(), losses.str().c_str());
  if (present(dlogits)) {
    TOPK_CHECK(dlogits.dtype == logits.dtype, "ops::%s: dlogits %s must have logits' dtype", op,
               dlogits.str().c_str());
    need_2d(op, "dlogits", dlogits, N, cols_of(logits));
  }
  TOPK_OPS_CALL(dev, cross_entropy, losses, dlogits, logits, targets, weights, grad_scale);
}

void add(const TensorView& y, const TensorView& a, const TensorView& b) {
  Device dev = common_device("add", {&y, &a, &b});
  need_float("add", "y", y);
  need_float("add", "a", a);
  need_float("add", "b", b);
  TOPK_CHECK(y.numel() == a.numel() && y.numel() == b.numel(), "ops::add: %s = %s + %s",
             y.str().c_str(), a.str().c_str(), b.str().c_str());
  TOPK_OPS_CALL(dev, add, y, a, b);
}

void scale(const TensorView& x, float s) {
  Device dev = common_device("scale", {&x});
  need("scale", "x", x, DType::f32);
  TOPK_OPS_CALL(dev, scale, x, s);
}

void convert(const TensorView& dst, const TensorView& src) {
  Device dev = common_device("convert", {&dst, &src});
  TOPK_CHECK(dst.numel() == src.numel(), "ops::convert: %s into %s", src.str().c_str(),
             dst.str().c_str());
  TOPK_CHECK(dst.dtype == src.dtype || (is_float(dst.dtype) && is_float(src.dtype)),
             "ops::convert: %s into %s", src.str().c_str(), dst.str().c_str());
  TOPK_OPS_CALL(dev, convert, dst, src);
}

void zero(const TensorView& x) {
  Device dev = x.device;
  TOPK_CHECK(x.is_contiguous(), "ops::zero: %s must be contiguous", x.str().c_str());
  TOPK_OPS_CALL(dev, zero, x);
}

double sum_squares(const TensorView& x) {
  Device dev = common_device("sum_squares", {&x});
  need("sum_squares", "x", x, DType::f32);
  return TOPK_OPS_CALL(dev, sum_squares, x);
}

bool all_finite(const TensorView& x) {
  Device dev = common_device("all_finite", {&x});
  need_float("all_finite", "x", x);
  return TOPK_OPS_CALL(dev, all_finite, x);
}

void scatter_rows(const TensorView& dst, const TensorView& index, const TensorView& src) {
  const char* op = "scatter_rows";
  Device dev = common_device(op, {&dst, &index, &src}, true);
  need(op, "index", index, DType::i32);
  TOPK_CHECK(dst.dtype == src.dtype && cols_of(dst) == cols_of(src) &&
                 index.numel() == rows_of(src),
             "ops::%s: %s rows of %s into %s", op, index.str().c_str(), src.str().c_str(),
             dst.str().c_str());
  TOPK_OPS_CALL(dev, scatter_rows, dst, index, src);
}

void gather_rows(const TensorView& dst, const TensorView& src, const TensorView& index) {
  const char* op = "gather_rows";
  Device dev = common_device(op, {&dst, &index, &src}, true);
  need(op, "index", index, DType::i32);
  TOPK_CHECK(dst.dtype == src.dtype && cols_of(dst) == cols_of(src) &&
                 index.numel() == rows_of(dst),
             "ops::%s: %s rows of %s into %s", op, index.str().c_str(), src.str().c_str(),
             dst.str().c_str());
  TOPK_OPS_CALL(dev, gather_rows, dst, src, index);
}

void adamw(const TensorView& w, const TensorView& grad, const TensorView& m, const TensorView& v,
           const TensorView& w_low, const AdamWStep& s) {
  const char* op = "adamw";
  Device dev = common_device(op, {&w, &grad, &m, &v, &w_low});
  for (const TensorView* t : {&w, &grad, &m, &v}) {
    need(op, "w/grad/m/v", *t, DType::f32);
    TOPK_CHECK(t->numel() == w.numel(), "ops::%s: %s for w %s", op, t->str().c_str(),
               w.str().c_str());
  }
  if (present(w_low)) {
    need(op, "w_low", w_low, DType::bf16);
    TOPK_CHECK(w_low.numel() == w.numel(), "ops::%s: w_low %s for w %s", op, w_low.str().c_str(),
               w.str().c_str());
  }
  TOPK_CHECK(s.t >= 1, "ops::adamw: step count %lld must be >= 1", (long long)s.t);
  TOPK_OPS_CALL(dev, adamw, w, grad, m, v, w_low, s);
}

}  // namespace topk::ops
