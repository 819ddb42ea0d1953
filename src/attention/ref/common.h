// Helpers for the scalar reference: load a head's vector as double, score one key.
#pragma once
#include <limits>
#include <vector>

#include "attention/params.h"

namespace topk::ref {

inline std::vector<double> load_vec(const Rows& r, int64_t b, int64_t row, int64_t h, int D) {
  std::vector<double> x(D);
  int64_t off = r.offset(b, row, h);
  for (int d = 0; d < D; d++) x[d] = load_f32(r.data, r.dtype, off + d);
  return x;
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Softmax over the given scores: returns lse (+inf for an empty list) and fills p.
inline double softmax(const std::vector<double>& s, std::vector<double>& p) {
  p.assign(s.size(), 0.0);
  if (s.empty()) return kInf;
  double m = -kInf;
  for (double x : s) m = x > m ? x : m;
  if (m == -kInf) return kInf;  // every score -inf: no key carries weight
  double l = 0;
  for (double x : s) l += std::exp(x - m);
  double lse = m + std::log(l);
  for (size_t j = 0; j < s.size(); j++) p[j] = std::exp(s[j] - lse);
  return lse;
}

// The keys one query row attends to (full: 0..visible-1; sparse: the valid listed indices).
inline std::vector<int64_t> row_keys(const AttnParams& p, const SeqDesc& s, int64_t t, int h,
                                     bool sparse) {
  std::vector<int64_t> keys;
  if (!sparse) {
    int64_t n = p.visible(s, t);
    for (int64_t j = 0; j < n; j++) keys.push_back(j);
    return keys;
  }
  int hs = p.Hsel == p.Hq ? h : h / p.group();
  const int32_t* row = p.idx + (p.qrow(s, t) * p.Hsel + hs) * p.K;
  for (int64_t i = 0; i < p.K; i++)
    if (row[i] >= 0 && row[i] < s.S) keys.push_back(row[i]);
  return keys;
}

// Forward of one query head over a key list: o (double, length D) and lse.
inline double attend(const AttnParams& p, const SeqDesc& s, int64_t t, int h,
                     const std::vector<int64_t>& keys, std::vector<double>& o,
                     std::vector<double>& prob) {
  int kh = h / p.group();
  auto q = load_vec(p.q, s.batch, s.q_start + t, h, p.D);
  std::vector<double> sc(keys.size());
  for (size_t i = 0; i < keys.size(); i++)
    sc[i] = p.scale * dot(q, load_vec(p.k, s.batch, s.k_start + keys[i], kh, p.D));
  double lse = softmax(sc, prob);
  o.assign(p.D, 0.0);
  for (size_t i = 0; i < keys.size(); i++) {
    if (prob[i] == 0) continue;
    auto v = load_vec(p.v, s.batch, s.k_start + keys[i], kh, p.D);
    for (int d = 0; d < p.D; d++) o[d] += prob[i] * v[d];
  }
  return lse;
}

void forward_rows(const AttnParams& p, bool sparse);
void backward_rows(const AttnParams& p, bool sparse);

}  // namespace topk::ref
