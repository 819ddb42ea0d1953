// Helpers of the CPU-vs-reference attention tests: cases, random tensors, comparisons.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "isa_util.h"
#include "topk/attention.h"

// Cases are written as brace lists that leave the sequence vectors empty on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace topk::test {

// One problem: sizes, layout of the sequences, dtypes.
struct Case {
  std::string name;
  int B = 1, T = 1, S = 16, Hq = 4, Hkv = 2, D = 64;
  bool causal = false;
  DType dt = DType::f32;   // q, k, v
  DType odt = DType::f32;  // o
  std::vector<int32_t> seqlens_k, cu_q, cu_k, q_pos;
  Seqs seqs() const {
    Seqs s;
    s.seqlens_k = seqlens_k;
    s.cu_seqlens_q = cu_q;
    s.cu_seqlens_k = cu_k;
    s.q_pos = q_pos;
    return s;
  }
  AttnOpts opts(Backend b) const {
    AttnOpts o;
    o.causal = causal;
    o.backend = b;
    return o;
  }
};

// The sequence layouts every op is checked on: a ragged cache (with an empty sequence), packed
// sequences (with an empty one), and explicit query positions (queries at q_pos and q_pos2 of a
// cache of S keys).
inline void add_layout_cases(std::vector<Case>& cs, int q_pos_S = 50, int q_pos2 = 20) {
  Case rag{"ragged", 3, 2, 100, 4, 2, 64, true};
  rag.seqlens_k = {0, 37, 100};
  cs.push_back(rag);
  Case pk{"packed", 1, 10, 130, 4, 1, 64, true};
  pk.cu_q = {0, 3, 3, 10};
  pk.cu_k = {0, 40, 50, 130};
  cs.push_back(pk);
  Case qp{"q_pos", 2, 4, q_pos_S, 4, 2, 64, true};
  qp.q_pos = {0, q_pos2};
  cs.push_back(qp);
}

inline std::string case_name(const Case& c) {
  return c.name + " [B" + std::to_string(c.B) + " T" + std::to_string(c.T) + " S" +
         std::to_string(c.S) + " Hq" + std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv) +
         " D" + std::to_string(c.D) + (c.causal ? " causal" : "") + " " + dtype_name(c.dt) + "]";
}

inline Buffer randn(DType dt, std::initializer_list<int64_t> shape, Rng& rng, float scale = 1.0f) {
  Buffer b(dt, shape);
  for (int64_t i = 0; i < b.numel(); i++) store_f32(b.view().data, dt, i, scale * rng.normal());
  return b;
}

// Random q [B, T, Hq, D] (times q_scale), then k and v [B, S, Hkv, D] of a case.
struct Qkv {
  Buffer q, k, v;
};
inline Qkv random_qkv(const Case& c, Rng& rng, float q_scale = 1.0f) {
  Buffer q = randn(c.dt, {c.B, c.T, c.Hq, c.D}, rng, q_scale);
  Buffer k = randn(c.dt, {c.B, c.S, c.Hkv, c.D}, rng);
  Buffer v = randn(c.dt, {c.B, c.S, c.Hkv, c.D}, rng);
  return {std::move(q), std::move(k), std::move(v)};
}

inline std::vector<float> to_vec(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); i++) v[i] = load_f32(t.data, t.dtype, int64_t(i));
  return v;
}

inline std::vector<int32_t> ivec(const TensorView& t) {
  const int32_t* p = t.ptr<int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

// Inf/NaN positions must agree first; then |got - want| <= atol + rtol * |want|.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want,
                         double rtol, double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; i++) {
    float g = got[i], w = want[i];
    bool ok;
    if (std::isnan(w) || std::isnan(g)) ok = std::isnan(w) && std::isnan(g);
    else if (std::isinf(w) || std::isinf(g)) ok = g == w;
    else ok = std::fabs(double(g) - double(w)) <= atol + rtol * std::fabs(double(w));
    if (!ok) {
      bad++;
      ADD_FAILURE() << what << ": element " << i << " got " << g << " want " << w;
    }
  }
}

inline bool bit_equal(const TensorView& a, const TensorView& b) {
  return a.numel() == b.numel() &&
         std::memcmp(a.data, b.data, size_t(a.numel()) * dtype_size(a.dtype)) == 0;
}

// The fp32 tolerance of the fast paths against the double reference, and the looser one of
// bf16/f16 outputs (one rounding of the output may land on the neighbouring value).
inline double rtol_for(DType out) { return out == DType::f32 ? 2e-5 : 1e-2; }
inline double atol_for(DType out) { return out == DType::f32 ? 2e-6 : 1e-2; }

}  // namespace topk::test
