// Shared pieces of the CPU fast paths: fp32 rows from any storage dtype, SIMD dot / axpy
// kernels over a few query rows at once, a vectorised exp, and the block score loop.
// Every reduction runs in a fixed order: results do not depend on threads.
//
// Every file of src/attention/cpu except dispatch.cpp is compiled once per instruction set
// (CMakeLists.txt): TOPK_SIMD is 0 (scalar: no intrinsics), 256 (AVX2 + FMA) or 512
// (AVX-512 F/BW/DQ/VL), each copy lives in its own namespace topk::cpu::TOPK_ISA, and
// dispatch.cpp picks one copy at run time. The instruction set is given per function
// (TOPK_TARGET on every function of these files), not per file: library code that a copy
// instantiates (std::vector and the like) stays baseline code, so whichever copy of it the
// linker keeps runs on every CPU.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#if TOPK_SIMD == 512
#define TOPK_ISA avx512
#define TOPK_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#elif TOPK_SIMD == 256
#define TOPK_ISA avx2
#define TOPK_TARGET __attribute__((target("avx2,fma,f16c")))
#elif TOPK_SIMD == 0
#define TOPK_ISA scalar
#define TOPK_TARGET
#else
#error "TOPK_SIMD must be 0, 256 or 512 (set by CMakeLists.txt)"
#endif

#if TOPK_SIMD > 0
#include <immintrin.h>
#endif

// The SIMD kernels are small and called in the innermost loops: a call, with its spills of the
// accumulator registers, costs as much as the arithmetic.
#define TOPK_INLINE inline __attribute__((always_inline))

#include "attention/params.h"

namespace topk::cpu::TOPK_ISA {
constexpr float kInfF = std::numeric_limits<float>::infinity();
}  // namespace topk::cpu::TOPK_ISA

#if TOPK_SIMD == 512
// GCC 12 warns of an uninitialised variable inside its own AVX-512 intrinsics wherever they are
// inlined (the "undefined" source operand of _mm512_castps512_ps256, _mm512_max_ps and others;
// GCC bug 105593). The scalar and AVX2 copies of the same files keep both warnings.
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // clang has no such warning (make fuzz builds with clang)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "attention/cpu/avx512.h"
#endif

namespace topk::cpu::TOPK_ISA {

// A grow-only scratch buffer that is not zero-filled: the ops write before they read, and
// zeroing (and page-faulting) megabytes of scores per decode step is measurable.
template <class T>
struct RawBuf {
  std::unique_ptr<T[]> p;
  size_t n = 0;
  T* get(size_t m) {
    if (m > n) {
      p = std::make_unique_for_overwrite<T[]>(m);
      n = m;
    }
    return p.get();
  }
};

// Converts D elements at element offset `off` of a float buffer of dtype t into fp32.
TOPK_TARGET inline void to_f32(const void* data, DType t, int64_t off, int D, float* out) {
  int d = 0;
  if (t == DType::f32) {
    const float* s = static_cast<const float*>(data) + off;
    std::copy(s, s + D, out);
    return;
  }
  [[maybe_unused]] const uint16_t* s = static_cast<const uint16_t*>(data) + off;
#if TOPK_SIMD >= 256
  if (t == DType::bf16) {
    for (; d + 8 <= D; d += 8) {
      __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + d));
      __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16);
      _mm256_storeu_ps(out + d, _mm256_castsi256_ps(u));
    }
  }
#endif
#if TOPK_SIMD >= 256
  if (t == DType::f16) {
    for (; d + 8 <= D; d += 8)
      _mm256_storeu_ps(out + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + d))));
  }
#endif
  for (; d < D; d++) out[d] = load_f32(data, t, off + d);
}

// Pointer to row (b, row, h) as fp32: in place for f32, else converted into buf [D].
TOPK_TARGET inline const float* row_f32(const Rows& r, int64_t b, int64_t row, int64_t h, int D,
                                        float* buf) {
  int64_t off = r.offset(b, row, h);
  if (r.dtype == DType::f32) return static_cast<const float*>(r.data) + off;
  to_f32(r.data, r.dtype, off, D, buf);
  return buf;
}

// Row (b, row, h) of a bf16 tensor, as its raw 16-bit values.
TOPK_TARGET TOPK_INLINE const uint16_t* bf16_row(const Rows& r, int64_t b, int64_t row, int64_t h) {
  return static_cast<const uint16_t*>(r.data) + r.offset(b, row, h);
}

#if TOPK_SIMD >= 256
TOPK_TARGET TOPK_INLINE float hsum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
TOPK_TARGET TOPK_INLINE float hmax(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// The 8 horizontal sums of a[0..7] in one vector, lane i = sum of a[i] (a transpose-add tree:
// 11 instructions instead of 8 separate horizontal sums).
TOPK_TARGET TOPK_INLINE __m256 reduce8(const __m256* a) {
  __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  t0 = _mm256_hadd_ps(t0, t1);  // lanes: a0 a1 a2 a3 (low halves) | a0 a1 a2 a3 (high halves)
  t2 = _mm256_hadd_ps(t2, t3);
  __m256 lo = _mm256_permute2f128_ps(t0, t2, 0x20), hi = _mm256_permute2f128_ps(t0, t2, 0x31);
  return _mm256_add_ps(lo, hi);
}

// exp(x) in fp32 (Cephes polynomial, ~1 ulp); exp(-inf) = 0, NaN stays NaN.
TOPK_TARGET TOPK_INLINE __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.5f);
  __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 xc = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
  __m256 fx = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  xc = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  xc = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), xc);
  __m256 z = _mm256_mul_ps(xc, xc);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, z, _mm256_add_ps(xc, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  y = _mm256_andnot_ps(tiny, y);  // below ~-87.5 the result is 0 (< 1e-38 in truth)
  return _mm256_blendv_ps(y, x, nan);
}
#endif

// max over x[0..n) (NaN ignored where a non-NaN exists; -inf for an empty or all -inf row).
TOPK_TARGET inline float row_max(const float* x, int64_t n) {
#if TOPK_SIMD == 512
  return row_max512(x, n);
#else
  float m = -kInfF;
  int64_t j = 0;
#if TOPK_SIMD >= 256
  __m256 vm = _mm256_set1_ps(-kInfF);
  for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + j), vm);
  m = hmax(vm);
#endif
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
#endif
}

// x[j] = exp(x[j] - m) for j < n; returns the sum (fixed order).
TOPK_TARGET inline float exp_sub_sum(float* x, int64_t n, float m) {
#if TOPK_SIMD == 512
  return exp_sub_sum512(x, n, m);
#else
  int64_t j = 0;
  float s = 0;
#if TOPK_SIMD >= 256
  __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm));
    _mm256_storeu_ps(x + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  s = hsum(acc);
#endif
  for (; j < n; j++) {
    x[j] = std::exp(x[j] - m);
    s += x[j];
  }
  return s;
#endif
}

// out[r * lds + c] = scale * (q_r . k_c) for R query rows q_r = q + r * ldq and NK keys k[c]:
// each key vector load serves R rows. The FMA latency (4 cycles, 2 per cycle) needs about 8
// independent accumulators, so few rows also split D over U accumulators. T: the keys' storage,
// float, or uint16_t for bf16 rows that the AVX-512 kernels widen in registers.
template <int R, int NK, class T>
TOPK_TARGET TOPK_INLINE void dot_keys(const float* q, int64_t ldq, const T* const* k, int D,
                                      float scale, float* out, int64_t lds) {
#if TOPK_SIMD == 512
  dot_keys512<R, NK, T>(q, ldq, k, D, scale, out, lds);
#else
  static_assert(std::is_same_v<T, float>, "only the AVX-512 kernels read bf16 rows");
  float s[R][NK];
  int d = 0;
#if TOPK_SIMD >= 256
  constexpr int U = R >= 4 ? 1 : (R == 1 ? 4 : 2);
  __m256 acc[R][NK][U];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NK; c++)
      for (int u = 0; u < U; u++) acc[r][c][u] = _mm256_setzero_ps();
  for (; d + 8 * U <= D; d += 8 * U)
    for (int u = 0; u < U; u++) {
      __m256 kv[NK];
      for (int c = 0; c < NK; c++) kv[c] = _mm256_loadu_ps(k[c] + d + 8 * u);
      for (int r = 0; r < R; r++) {
        __m256 qv = _mm256_loadu_ps(q + r * ldq + d + 8 * u);
        for (int c = 0; c < NK; c++) acc[r][c][u] = _mm256_fmadd_ps(qv, kv[c], acc[r][c][u]);
      }
    }
  for (; d + 8 <= D; d += 8)
    for (int c = 0; c < NK; c++) {
      __m256 kv = _mm256_loadu_ps(k[c] + d);
      for (int r = 0; r < R; r++)
        acc[r][c][0] = _mm256_fmadd_ps(_mm256_loadu_ps(q + r * ldq + d), kv, acc[r][c][0]);
    }
  if constexpr (R * NK == 8 && U == 1) {
    __m256 v[8];
    for (int r = 0; r < R; r++)
      for (int c = 0; c < NK; c++) v[r * NK + c] = acc[r][c][0];
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, reduce8(v));
    for (int r = 0; r < R; r++)
      for (int c = 0; c < NK; c++) s[r][c] = tmp[r * NK + c];
  } else {
    for (int r = 0; r < R; r++)
      for (int c = 0; c < NK; c++) {
        __m256 t = acc[r][c][0];
        for (int u = 1; u < U; u++) t = _mm256_add_ps(t, acc[r][c][u]);
        s[r][c] = hsum(t);
      }
  }
#else
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NK; c++) s[r][c] = 0;
#endif
  for (; d < D; d++)
    for (int r = 0; r < R; r++)
      for (int c = 0; c < NK; c++) s[r][c] += q[r * ldq + d] * k[c][d];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NK; c++) out[r * lds + c] = scale * s[r][c];
#endif
}

// Any number of rows (4 at a time) against NK keys.
template <int NK, class T>
TOPK_TARGET TOPK_INLINE void dot_nrows_keys(const float* q, int64_t ldq, int nr, const T* const* k,
                                            int D, float scale, float* out, int64_t lds) {
  int r = 0;
  for (; r + 4 <= nr; r += 4) dot_keys<4, NK, T>(q + r * ldq, ldq, k, D, scale, out + r * lds, lds);
  switch (nr - r) {
    case 3: dot_keys<3, NK, T>(q + r * ldq, ldq, k, D, scale, out + r * lds, lds); break;
    case 2: dot_keys<2, NK, T>(q + r * ldq, ldq, k, D, scale, out + r * lds, lds); break;
    case 1: dot_keys<1, NK, T>(q + r * ldq, ldq, k, D, scale, out + r * lds, lds); break;
    default: break;
  }
}

// out[r * lds] = scale * (q_r . k) for nr rows and one key.
TOPK_TARGET inline void dot_nrows(const float* q, int64_t ldq, int nr, const float* k, int D,
                                  float scale, float* out, int64_t lds) {
  dot_nrows_keys<1, float>(q, ldq, nr, &k, D, scale, out, lds);
}

// o_r += sum_j P[r * ldp + j] * v_j for R rows o_r = o + r * ldo and nk value rows v[j].
// U vectors of D per step keep R * U >= 8 accumulators in flight. T as for dot_keys.
template <int R, class T>
TOPK_TARGET TOPK_INLINE void pv_rows(float* o, int64_t ldo, const float* P, int64_t ldp,
                                     const T* const* v, int nk, int D) {
#if TOPK_SIMD == 512
  pv_rows512<R, T>(o, ldo, P, ldp, v, nk, D);
#else
  static_assert(std::is_same_v<T, float>, "only the AVX-512 kernels read bf16 rows");
  int d = 0;
#if TOPK_SIMD >= 256
  constexpr int U = R >= 4 ? 2 : (R == 1 ? 8 : 4);
  for (; d + 8 * U <= D; d += 8 * U) {
    __m256 acc[R][U];
    for (int r = 0; r < R; r++)
      for (int u = 0; u < U; u++) acc[r][u] = _mm256_loadu_ps(o + r * ldo + d + 8 * u);
    for (int j = 0; j < nk; j++) {
      __m256 pr[R];
      for (int r = 0; r < R; r++) pr[r] = _mm256_broadcast_ss(P + r * ldp + j);
      for (int u = 0; u < U; u++) {
        __m256 vv = _mm256_loadu_ps(v[j] + d + 8 * u);
        for (int r = 0; r < R; r++) acc[r][u] = _mm256_fmadd_ps(pr[r], vv, acc[r][u]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int u = 0; u < U; u++) _mm256_storeu_ps(o + r * ldo + d + 8 * u, acc[r][u]);
  }
  for (; d + 8 <= D; d += 8) {
    __m256 acc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm256_loadu_ps(o + r * ldo + d);
    for (int j = 0; j < nk; j++) {
      __m256 vv = _mm256_loadu_ps(v[j] + d);
      for (int r = 0; r < R; r++)
        acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(P + r * ldp + j), vv, acc[r]);
    }
    for (int r = 0; r < R; r++) _mm256_storeu_ps(o + r * ldo + d, acc[r]);
  }
#endif
  for (; d < D; d++)
    for (int r = 0; r < R; r++) {
      float a = o[r * ldo + d];
      for (int j = 0; j < nk; j++) a += P[r * ldp + j] * v[j][d];
      o[r * ldo + d] = a;
    }
#endif
}

template <class T>
TOPK_TARGET TOPK_INLINE void pv_nrows(float* o, int64_t ldo, int nr, const float* P, int64_t ldp,
                                      const T* const* v, int nk, int D) {
  int r = 0;
  for (; r + 4 <= nr; r += 4) pv_rows<4, T>(o + r * ldo, ldo, P + r * ldp, ldp, v, nk, D);
  switch (nr - r) {
    case 3: pv_rows<3, T>(o + r * ldo, ldo, P + r * ldp, ldp, v, nk, D); break;
    case 2: pv_rows<2, T>(o + r * ldo, ldo, P + r * ldp, ldp, v, nk, D); break;
    case 1: pv_rows<1, T>(o + r * ldo, ldo, P + r * ldp, ldp, v, nk, D); break;
    default: break;
  }
}

// y += a * x over D.
TOPK_TARGET inline void axpy(float* y, float a, const float* x, int D) {
#pragma omp simd
  for (int d = 0; d < D; d++) y[d] += a * x[d];
}

TOPK_TARGET inline void scale_row(float* y, float a, int D) {
#pragma omp simd
  for (int d = 0; d < D; d++) y[d] *= a;
}

TOPK_TARGET inline float dot1(const float* a, const float* b, int D) {
  float s;
  dot_keys<1, 1, float>(a, 0, &b, D, 1.0f, &s, 0);
  return s;
}

// Number of batches covered by the sequences (rows of the contiguous per-query arrays).
TOPK_TARGET inline int64_t batches(const AttnParams& p) {
  int64_t B = 0;
  for (int i = 0; i < p.nseq; i++) B = std::max<int64_t>(B, p.seqs[i].batch + 1);
  return B;
}

// Zeroes the dq rows of every sequence's queries before a backward accumulates into them; rows
// of no sequence (past seqlens_q[b], or outside every cu_seqlens_q span) are not written.
TOPK_TARGET inline void zero_dq_rows(const AttnParams& p) {
  for (int i = 0; i < p.nseq; i++) {
    const SeqDesc& s = p.seqs[i];
    float* row0 = p.dq + p.qrow(s, 0) * p.Hq * p.D;
    std::fill(row0, row0 + int64_t(s.T) * p.Hq * p.D, 0.0f);
  }
}

// Loads the queries t0..t0+nt-1, heads of KV heads [kh0, kh1), of sequence s as fp32:
// Q[(t * nh + hl) * D + d] with nh = (kh1 - kh0) * G local heads.
TOPK_TARGET inline void load_q(const AttnParams& p, const SeqDesc& s, int64_t t0, int nt, int kh0,
                               int kh1, float* Q) {
  int G = p.group(), nh = (kh1 - kh0) * G;
  for (int t = 0; t < nt; t++)
    for (int hl = 0; hl < nh; hl++)
      to_f32(p.q.data, p.q.dtype, p.q.offset(s.batch, s.q_start + t0 + t, kh0 * G + hl), p.D,
             Q + (int64_t(t) * nh + hl) * p.D);
}

constexpr int kPrefetch = 8;  // keys ahead: 32 KiB of K for 8 KV heads of D = 128, f32

// Bytes per element of a float storage dtype (f32, bf16, f16).
TOPK_TARGET TOPK_INLINE int elem_bytes(DType t) { return t == DType::f32 ? 4 : 2; }

// Prefetches n rows of `bytes` bytes each, `stride` bytes apart, from a.
// Rows of 512 bytes (D = 128 f32, or 256 bf16) take a straight run of 8 prefetches: the loop
// control of a general loop costs as much as the prefetches.
TOPK_TARGET TOPK_INLINE void prefetch_lines(const char* a, int64_t stride, int n, int bytes) {
#if TOPK_SIMD > 0
  for (int i = 0; i < n; i++) {
    const char* r = a + i * stride;
    if (bytes == 512) {
#pragma GCC unroll 8
      for (int b = 0; b < 512; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
    } else {
      for (int b = 0; b < bytes; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
    }
  }
#endif
}

// Prefetches one row (b, row, h) of D elements.
TOPK_TARGET TOPK_INLINE void prefetch_row(const Rows& r, int64_t b, int64_t row, int64_t h, int D) {
  int es = elem_bytes(r.dtype);
  prefetch_lines(static_cast<const char*>(r.data) + r.offset(b, row, h) * es, 0, 1, D * es);
}

// Keys per step of the score loop: 4 keys x 4 heads of a group fill one reduce16 (AVX-512);
// AVX2 has registers for 2 keys x 4 heads.
constexpr int kKeys = TOPK_SIMD == 512 ? 4 : 2;

// One step of score_block: nk <= kKeys keys k[c] (stored as T) against the G query rows
// r = t * qh + r0 .. + G - 1 of each query t < nt: out[r * lds + c].
template <class T>
TOPK_TARGET TOPK_INLINE void score_step(const float* Q, int nt, int qh, int64_t r0, int G, int D,
                                        float scale, const T* const* k, int nk, float* out,
                                        int64_t lds) {
  for (int t = 0; t < nt; t++) {
    int64_t r = int64_t(t) * qh + r0;
    if (nk == kKeys) {
      dot_nrows_keys<kKeys, T>(Q + r * D, D, G, k, D, scale, out + r * lds, lds);
    } else {
      for (int c = 0; c < nk; c++)
        dot_nrows_keys<1, T>(Q + r * D, D, G, k + c, D, scale, out + r * lds + c, lds);
    }
  }
}

// Scores scale * q.k against keys [ja, jb) of sequence s for queries t < nt and the heads of
// KV heads [kh0, kh1). Query row (t, h) is r = t * qh + h - h0 in both Q (fp32 [*, D], as
// load_q lays it out with qh = (kh1 - kh0) * G, h0 = kh0 * G) and out (row stride lds, column
// j - jbase). Keys run in the outer loop and every KV head of a key row is used before the next
// row, so K is streamed once, in memory order. kbuf: [kKeys * D] scratch for non-f32 keys.
// pf_end: K rows are prefetched up to this key (the caller's range may go past jb); vpf: also
// prefetch the V rows of the keys scored, for a PV step that follows.
TOPK_TARGET inline void score_block(const AttnParams& p, const SeqDesc& s, const float* Q, int nt,
                                    int kh0, int kh1, int qh, int h0, int64_t ja, int64_t jb,
                                    float* out, int64_t lds, int64_t jbase, float* kbuf,
                                    int64_t pf_end = 0, bool vpf = false) {
  int G = p.group(), D = p.D, es = elem_bytes(p.k.dtype), ves = elem_bytes(p.v.dtype);
  bool f32 = p.k.dtype == DType::f32;
  // Byte addresses: key j, KV head kh of K is at kb + j * kst + kh * ksh (V likewise).
  const char* kb = static_cast<const char*>(p.k.data) + p.k.offset(s.batch, s.k_start, 0) * es;
  const char* vb = nullptr;
  if (vpf) vb = static_cast<const char*>(p.v.data) + p.v.offset(s.batch, s.k_start, 0) * ves;
  int64_t kst = p.k.st * es, ksh = p.k.sh * es, vst = p.v.st * ves, vsh = p.v.sh * ves;
  int64_t pf_last = std::max(jb, pf_end) - kKeys;  // last key a prefetch may start at
  for (int64_t j = ja; j < jb; j += kKeys) {
    int nk = int(std::min<int64_t>(kKeys, jb - j));
    // The hardware prefetcher alone does not run far enough ahead of this loop for the loads
    // to overlap the math: fetch K rows kPrefetch keys ahead (and V rows for the caller's PV
    // step that follows) explicitly, a head at a time between the dot products. (Issuing a
    // whole row's prefetches at once fills the miss queue and stalls: 18 vs 26 GB/s.)
    bool pf = j + kPrefetch <= pf_last;
    for (int kh = kh0; kh < kh1; kh++) {
      const char* kr = kb + j * kst + kh * ksh;
      if (pf) prefetch_lines(kr + kPrefetch * kst, kst, kKeys, D * es);
      if (vpf) prefetch_lines(vb + j * vst + kh * vsh, vst, nk, D * ves);
      float* o = out + (j - jbase);
#if TOPK_SIMD == 512
      if (p.k.dtype == DType::bf16) {  // widened in registers, no copy
        const uint16_t* k[kKeys];
        for (int c = 0; c < nk; c++) k[c] = reinterpret_cast<const uint16_t*>(kr + c * kst);
        score_step(Q, nt, qh, kh * G - h0, G, D, p.scale, k, nk, o, lds);
        continue;
      }
#endif
      const float* k[kKeys];
      for (int c = 0; c < nk; c++) {
        if (f32) {
          k[c] = reinterpret_cast<const float*>(kr + c * kst);
        } else {
          to_f32(kr + c * kst, p.k.dtype, 0, D, kbuf + c * D);
          k[c] = kbuf + c * D;
        }
      }
      score_step(Q, nt, qh, kh * G - h0, G, D, p.scale, k, nk, o, lds);
    }
  }
}

// score_block for rows of all heads (qh = Hq, h0 = 0) into out[(t * Hq + h) * ld + j], through
// a small tile of kTile keys: rows of a long score matrix are far apart, and writing them key
// by key would keep 32+ lines of scattered rows in flight (and alias to one cache set when ld
// is a power of two). tile: scratch of nt * Hq * kTile floats. pf_end as in score_block.
// stream: full tiles go out with streaming stores where out's rows are 64-byte aligned.
constexpr int kTile = 64;
TOPK_TARGET inline void score_rows(const AttnParams& p, const SeqDesc& s, const float* Q, int nt,
                                   int kh0, int kh1, int64_t ja, int64_t jb, float* out, int64_t ld,
                                   float* tile, float* kbuf, int64_t pf_end, bool stream = false) {
  int G = p.group();
  for (int64_t j0 = ja; j0 < jb; j0 += kTile) {
    int64_t j1 = std::min(jb, j0 + kTile);
    score_block(p, s, Q, nt, kh0, kh1, p.Hq, 0, j0, j1, tile, kTile, j0, kbuf, pf_end);
    for (int t = 0; t < nt; t++)
      for (int h = kh0 * G; h < kh1 * G; h++) {
        const float* src = tile + (int64_t(t) * p.Hq + h) * kTile;
        float* dst = out + (int64_t(t) * p.Hq + h) * ld + j0;
#if TOPK_SIMD > 0
        if (stream && j1 - j0 == kTile && (reinterpret_cast<uintptr_t>(dst) & 63) == 0) {
#if TOPK_SIMD == 512
          for (int c = 0; c < kTile; c += 16) _mm512_stream_ps(dst + c, _mm512_loadu_ps(src + c));
#else
          for (int c = 0; c < kTile; c += 8) _mm256_stream_ps(dst + c, _mm256_loadu_ps(src + c));
#endif
          continue;
        }
#endif
        std::copy(src, src + (j1 - j0), dst);
      }
  }
#if TOPK_SIMD > 0
  if (stream) _mm_sfence();  // order the streaming stores before the barrier that ends step 1
#endif
}

// Writes o = acc / l and lse = m + ln l for query t, head h of sequence s. A row that saw no
// key with weight (l == 0) gets o = 0 and lse = +inf.
TOPK_TARGET inline void write_row(const AttnParams& p, const SeqDesc& s, int64_t t, int h,
                                  const float* acc, float m, float l) {
  int64_t off = p.o.offset(s.batch, s.q_start + t, h);
  bool empty = !(l > 0) && !(l != l);
  float inv = empty ? 0.0f : 1.0f / l;
  if (p.o.dtype == DType::f32) {
    float* o = static_cast<float*>(p.o_data) + off;
    for (int d = 0; d < p.D; d++) o[d] = acc[d] * inv;
  } else {
    for (int d = 0; d < p.D; d++) store_f32(p.o_data, p.o.dtype, off + d, acc[d] * inv);
  }
  p.lse[p.qrow(s, t) * p.Hq + h] = empty ? kInfF : m + std::log(l);
}

}  // namespace topk::cpu::TOPK_ISA
