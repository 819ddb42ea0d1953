// Helpers of the CUDA tests of prefill, training and metrics (test_cuda_prefill.cpp,
// test_cuda_backward.cpp, test_cuda_metrics.cpp): tensors with a host and a device copy, random
// fills, poisoning, layouts of sequences, comparisons against the reference. Same conventions as
// test_cuda_ops.cpp: fresh random inputs from fixed seeds (never zeros), device outputs poisoned
// before each call, +-inf positions must match before tolerances apply.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "attention/params.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "topk/attention.h"

namespace topk::cudatest {

#define NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

// A tensor with a host copy and a device copy of the same dtype and shape.
struct Pair {
  Buffer host, dev;
  Pair(DType dt, std::initializer_list<int64_t> shape) : host(dt, shape), dev(dt, shape, Device::cuda) {}
  void upload() { copy(dev, host); }
  // The device copy as raw bytes (for bit-exact comparisons) and as floats.
  std::vector<unsigned char> bytes() const {
    Buffer h(dev.view().dtype, {dev.numel()});
    TensorView flat = dev.view();
    flat.ndim = 1;
    flat.shape[0] = dev.numel();
    flat.stride[0] = 1;
    copy(h, flat);
    const unsigned char* p = h.ptr<unsigned char>();
    return std::vector<unsigned char>(p, p + h.bytes());
  }
  std::vector<float> download() const {
    std::vector<unsigned char> b = bytes();
    std::vector<float> out(size_t(dev.numel()));
    const DType dt = dev.view().dtype;
    for (size_t i = 0; i < out.size(); i++)
      out[i] = dt == DType::i32 ? float(reinterpret_cast<const int32_t*>(b.data())[i])
                                : load_f32(b.data(), dt, int64_t(i));
    return out;
  }
};

inline void fill_random(Buffer& b, Rng& rng, float scale = 1.f) {
  for (int64_t i = 0; i < b.numel(); i++) store_f32(b.ptr<void>(), b.view().dtype, i, scale * rng.normal());
}

// NaN for float tensors, 0x7f7f7f7f for ints: elements a kernel fails to write stay visible.
inline void poison(const Buffer& dev) {
  Buffer h(dev.view().dtype, {dev.numel()});
  std::memset(h.ptr<void>(), 0x7f, h.bytes());
  if (dev.view().dtype != DType::i32)
    for (int64_t i = 0; i < h.numel(); i++) store_f32(h.ptr<void>(), h.view().dtype, i, std::nanf(""));
  TensorView flat = dev.view();
  flat.ndim = 1;
  flat.shape[0] = dev.numel();
  flat.stride[0] = 1;
  copy(flat, h);
}

inline std::vector<float> host_vals(const Buffer& b) {
  std::vector<float> out(size_t(b.numel()));
  for (int64_t i = 0; i < b.numel(); i++) out[size_t(i)] = load_f32(b.ptr<void>(), b.view().dtype, i);
  return out;
}

// Root mean square of the finite elements of a tensor at the positions mask marks (all when empty).
inline double rms(const std::vector<float>& x, const std::vector<char>& mask = {}) {
  double s = 0;
  int64_t n = 0;
  for (size_t i = 0; i < x.size(); i++)
    if ((mask.empty() || mask[i]) && std::isfinite(x[i])) s += double(x[i]) * x[i], n++;
  return n ? std::sqrt(s / double(n)) : 0.0;
}

// Root mean square of the finite elements of each row of n consecutive elements of x
// ([rows, n]), 0 for a row with none.
inline std::vector<double> row_rms(const std::vector<float>& x, int64_t n) {
  std::vector<double> r(x.size() / size_t(n));
  for (size_t i = 0; i < r.size(); i++)
    r[i] = rms(std::vector<float>(x.begin() + int64_t(i) * n, x.begin() + int64_t(i + 1) * n));
  return r;
}

// At the positions mask marks (all when empty): +-inf must match, then
// |got - want| <= atol[i] + rtol |want|. Elsewhere got must still be NaN (never written).
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                         const std::vector<double>& atol, double rtol, const std::string& what,
                         const std::vector<char>& mask = {}) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(atol.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const float a = got[i], b = want[i];
    bool ok;
    if (!mask.empty() && !mask[i]) ok = std::isnan(a);
    else if (std::isinf(b) || std::isinf(a)) ok = a == b;
    else ok = std::isfinite(a) && std::fabs(double(a) - b) <= atol[i] + rtol * std::fabs(double(b));
    if (!ok && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << a << ", want "
                    << (!mask.empty() && !mask[i] ? std::string("unwritten") : std::to_string(b));
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size() << " elements differ";
}

// The same with one atol for every element.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, double atol,
                         double rtol, const std::string& what, const std::vector<char>& mask = {}) {
  expect_close(got, want, std::vector<double>(want.size(), atol), rtol, what, mask);
}

// How rows form sequences: batched (with optional ragged seqlens_k / seqlens_q and q_pos) or
// packed (cu_seqlens). Owns its arrays.
struct Layout {
  int64_t B = 1, T = 1, S = 1;  // q [B, T, ...], k [B, S, ...]
  std::vector<int32_t> seqlens_k, seqlens_q, cu_q, cu_k, q_pos;
  Seqs seqs() const {
    Seqs s;
    s.seqlens_k = seqlens_k;
    s.seqlens_q = seqlens_q;
    s.cu_seqlens_q = cu_q;
    s.cu_seqlens_k = cu_k;
    s.q_pos = q_pos;
    return s;
  }
  bool packed() const { return !cu_q.empty(); }
  int64_t nseq() const { return packed() ? int64_t(cu_q.size()) - 1 : B; }
  // Query rows [q0, q0 + nq) of batch b of sequence i; its key rows likewise.
  void seq(int64_t i, int64_t& b, int64_t& q0, int64_t& nq, int64_t& k0, int64_t& nk) const {
    if (packed()) {
      b = 0;
      q0 = cu_q[size_t(i)];
      nq = cu_q[size_t(i) + 1] - q0;
      k0 = cu_k[size_t(i)];
      nk = cu_k[size_t(i) + 1] - k0;
    } else {
      b = i;
      q0 = 0;
      nq = seqlens_q.empty() ? T : seqlens_q[size_t(i)];
      k0 = 0;
      nk = seqlens_k.empty() ? S : seqlens_k[size_t(i)];
    }
  }
  // 1 for the [B, T] query rows some sequence owns, 0 for the others.
  std::vector<char> owned_rows() const {
    std::vector<char> m(size_t(B * T), 0);
    for (int64_t i = 0; i < nseq(); i++) {
      int64_t b, q0, nq, k0, nk;
      seq(i, b, q0, nq, k0, nk);
      for (int64_t t = 0; t < nq; t++) m[size_t(b * T + q0 + t)] = 1;
    }
    return m;
  }
  // 1 for the [B, S] key rows some sequence owns, 0 for the others.
  std::vector<char> owned_key_rows() const {
    std::vector<char> m(size_t(B * S), 0);
    for (int64_t i = 0; i < nseq(); i++) {
      int64_t b, q0, nq, k0, nk;
      seq(i, b, q0, nq, k0, nk);
      for (int64_t j = 0; j < nk; j++) m[size_t(b * S + k0 + j)] = 1;
    }
    return m;
  }
  // The row mask widened to `per` elements per row.
  std::vector<char> owned(int64_t per) const {
    std::vector<char> r = owned_rows(), m(r.size() * size_t(per));
    for (size_t i = 0; i < m.size(); i++) m[i] = r[i / size_t(per)];
    return m;
  }
};

// NaN in the rows of a host tensor [B, R, H, D] that no sequence owns (query rows, or key rows
// when keys): the kernels must never read them.
inline void nan_unowned(Buffer& x, const Layout& l, bool keys) {
  const std::vector<char> m = keys ? l.owned_key_rows() : l.owned_rows();
  const TensorView& v = x.view();
  const int64_t per = v.shape[2] * v.shape[3];
  for (size_t r = 0; r < m.size(); r++)
    if (!m[r])
      for (int64_t i = 0; i < per; i++) store_f32(x.ptr<void>(), v.dtype, int64_t(r) * per + i, std::nanf(""));
}

// q [B, T, Hq, D], k and v [B, S, Hkv, D], with host and device copies.
struct Qkv {
  Pair q, k, v;
  Qkv(const Layout& l, int Hq, int Hkv, int D, DType qdt, DType kvdt, uint64_t seed, float qscale = 1.5f)
      : q(qdt, {l.B, l.T, Hq, D}), k(kvdt, {l.B, l.S, Hkv, D}), v(kvdt, {l.B, l.S, Hkv, D}) {
    Rng rng(seed);
    fill_random(q.host, rng, qscale);
    fill_random(k.host, rng);
    fill_random(v.host, rng);
    nan_unowned(q.host, l, false);  // padding rows: never read
    nan_unowned(k.host, l, true);
    nan_unowned(v.host, l, true);
    q.upload();
    k.upload();
    v.upload();
  }
};

inline AttnOpts opts(bool causal, Backend b) {
  AttnOpts o;
  o.causal = causal;
  o.backend = b;
  return o;
}

// Sets an environment variable while alive (the CUDA knobs: TOPK_CUDA_WORKSPACE_BUDGET ...).
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const std::string& value) : name(n) { setenv(n, value.c_str(), 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

}  // namespace topk::cudatest
