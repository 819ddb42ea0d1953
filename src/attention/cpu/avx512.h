// AVX-512 kernels of the CPU fast paths (included by common.h in the TOPK_SIMD == 512 copy).
// Same contracts as the generic kernels in common.h; 16 lanes and masked tails instead of 8
// lanes and scalar tails. Every sum runs in a fixed order, so results are deterministic (but
// not bit-identical to the AVX2 copy: the lanes split the sums differently).
#pragma once

namespace topk::cpu::TOPK_ISA {

// The first n (<= 16) lanes.
TOPK_TARGET TOPK_INLINE __mmask16 lanes(int n) { return __mmask16((1u << n) - 1); }

TOPK_TARGET TOPK_INLINE float hsum512(__m512 v) {
  __m256 x = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 y = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  y = _mm_add_ps(y, _mm_movehl_ps(y, y));
  y = _mm_add_ss(y, _mm_movehdup_ps(y));
  return _mm_cvtss_f32(y);
}

TOPK_TARGET TOPK_INLINE float hmax512(__m512 v) {
  __m256 x = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 y = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  y = _mm_max_ps(y, _mm_movehl_ps(y, y));
  y = _mm_max_ss(y, _mm_movehdup_ps(y));
  return _mm_cvtss_f32(y);
}

// The 16 horizontal sums of a[0..15] in one vector, lane i = sum of a[i]: a transpose-add tree
// (45 instructions instead of 16 separate horizontal sums of ~8 each). Each level adds the
// halves of pairs of vectors: 256-bit halves, then 128-bit quarters, then pairs of lanes. The
// tree leaves lane 4c + p holding vector p + {0, 8, 4, 12}[c], so it is fed blocks 1 and 2
// swapped: lane i holds a[i].
TOPK_TARGET TOPK_INLINE __m512 reduce16(const __m512 (&a)[16]) {
  __m512 x[8], z[4];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    __m512 lo = a[i < 4 ? i : i + 4], hi = a[i < 4 ? i + 4 : i + 8];
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(lo, hi, 0x44), _mm512_shuffle_f32x4(lo, hi, 0xEE));
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++)
    z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[i], x[i + 4], 0x88),
                         _mm512_shuffle_f32x4(x[i], x[i + 4], 0xDD));
  __m512 w0 = _mm512_add_ps(_mm512_unpacklo_ps(z[0], z[1]), _mm512_unpackhi_ps(z[0], z[1]));
  __m512 w1 = _mm512_add_ps(_mm512_unpacklo_ps(z[2], z[3]), _mm512_unpackhi_ps(z[2], z[3]));
  __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(w0), _mm512_castps_pd(w1));
  __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(w0), _mm512_castps_pd(w1));
  return _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
}

// exp(x), the same Cephes polynomial as exp256; exp(-inf) = 0, NaN stays NaN.
TOPK_TARGET TOPK_INLINE __m512 exp512(__m512 x) {
  const __m512 hi = _mm512_set1_ps(88.3762626647949f), lo = _mm512_set1_ps(-87.5f);
  __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  __m512 xc = _mm512_max_ps(_mm512_min_ps(x, hi), lo);
  __m512 fx = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
  fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  xc = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), xc);
  xc = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), xc);
  __m512 z = _mm512_mul_ps(xc, xc);
  __m512 y = _mm512_set1_ps(1.9875691500E-4f);
  y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(1.3981999507E-3f));
  y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(8.3334519073E-3f));
  y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(4.1665795894E-2f));
  y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(1.6666665459E-1f));
  y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(5.0000001201E-1f));
  y = _mm512_fmadd_ps(y, z, _mm512_add_ps(xc, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127));
  e = _mm512_slli_epi32(e, 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
  y = _mm512_maskz_mov_ps(__mmask16(~tiny), y);  // below ~-87.5 the result is 0
  return _mm512_mask_mov_ps(y, nan, x);
}

TOPK_TARGET TOPK_INLINE float row_max512(const float* x, int64_t n) {
  __m512 vm = _mm512_set1_ps(-kInfF);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) vm = _mm512_max_ps(_mm512_loadu_ps(x + j), vm);
  if (j < n) {
    __mmask16 k = lanes(int(n - j));
    vm = _mm512_mask_max_ps(vm, k, _mm512_maskz_loadu_ps(k, x + j), vm);
  }
  return hmax512(vm);
}

TOPK_TARGET TOPK_INLINE float exp_sub_sum512(float* x, int64_t n, float m) {
  __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vm));
    _mm512_storeu_ps(x + j, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (j < n) {
    __mmask16 k = lanes(int(n - j));
    __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vm));
    _mm512_mask_storeu_ps(x + j, k, e);
    acc = _mm512_mask_add_ps(acc, k, acc, e);
  }
  return hsum512(acc);
}

// 16 fp32 values from f32 storage, or from bf16 storage (the bits of a bf16 are the top half of
// the f32 with the same value: widening is a shift, exact). The masked forms read only the
// first lanes(n) elements.
TOPK_TARGET TOPK_INLINE __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
TOPK_TARGET TOPK_INLINE __m512 load16(const uint16_t* p) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
TOPK_TARGET TOPK_INLINE __m512 load16(__mmask16 m, const float* p) {
  return _mm512_maskz_loadu_ps(m, p);
}
TOPK_TARGET TOPK_INLINE __m512 load16(__mmask16 m, const uint16_t* p) {
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// order_key (attention/select_rule.h) of 16 scores: unsigned keys in score order, -0 = +0, NaN lowest (0).
TOPK_TARGET TOPK_INLINE __m512i score_keys512(__m512 v) {
  __m512i u = _mm512_castps_si512(_mm512_add_ps(v, _mm512_setzero_ps()));  // -0 -> +0
  __m512i k = _mm512_xor_si512(u, _mm512_or_si512(_mm512_srai_epi32(u, 31),
                                                  _mm512_set1_epi32(int(0x80000000u))));
  return _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), k);  // NaN -> 0
}

// out[r * lds + c] = scale * (q_r . k_c) for R query rows and NK keys (see dot_keys), keys
// stored as T (float, or uint16_t for bf16). With R * NK = 16 (4 heads x 4 keys, the decode
// case) the 16 sums come out of one reduce16 and each row's 4 scores leave in one 128-bit store.
template <int R, int NK, class T>
TOPK_TARGET TOPK_INLINE void dot_keys512(const float* q, int64_t ldq, const T* const* k, int D,
                                         float scale, float* out, int64_t lds) {
  constexpr int U = R * NK >= 8 ? 1 : (R * NK >= 4 ? 2 : 4);
  __m512 acc[R * NK * U];
#pragma GCC unroll 64
  for (int i = 0; i < R * NK * U; i++) acc[i] = _mm512_setzero_ps();
  int d = 0;
  for (; d + 16 * U <= D; d += 16 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
      __m512 kv[NK];
#pragma GCC unroll 16
      for (int c = 0; c < NK; c++) kv[c] = load16(k[c] + d + 16 * u);
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        __m512 qv = _mm512_loadu_ps(q + r * ldq + d + 16 * u);
#pragma GCC unroll 16
        for (int c = 0; c < NK; c++)
          acc[(r * NK + c) * U + u] = _mm512_fmadd_ps(qv, kv[c], acc[(r * NK + c) * U + u]);
      }
    }
  }
  // The tail (short or odd D): up to U vectors, the last one masked, each into its own
  // accumulator, so that small dots (D = 32 in a training step) do not chain their FMAs. (The
  // accumulator indices must stay constants, or the array leaves the registers.)
  for (; d < D; d += 16 * U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; u++) {
      int du = d + 16 * u;
      if (du >= D) break;
      __mmask16 m = lanes(std::min(16, D - du));
      __m512 kv[NK];
#pragma GCC unroll 16
      for (int c = 0; c < NK; c++) kv[c] = load16(m, k[c] + du);
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        __m512 qv = _mm512_maskz_loadu_ps(m, q + r * ldq + du);
#pragma GCC unroll 16
        for (int c = 0; c < NK; c++)
          acc[(r * NK + c) * U + u] = _mm512_fmadd_ps(qv, kv[c], acc[(r * NK + c) * U + u]);
      }
    }
  }
  if constexpr (R == 4 && NK == 4) {
    __m512 v = _mm512_mul_ps(_mm512_set1_ps(scale), reduce16(acc));
    _mm_storeu_ps(out, _mm512_extractf32x4_ps(v, 0));
    _mm_storeu_ps(out + lds, _mm512_extractf32x4_ps(v, 1));
    _mm_storeu_ps(out + 2 * lds, _mm512_extractf32x4_ps(v, 2));
    _mm_storeu_ps(out + 3 * lds, _mm512_extractf32x4_ps(v, 3));
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < R * NK; i++) {
      // A tree over the U accumulators: short dots sit on this latency.
      __m512* a = acc + i * U;
      __m512 t = U == 1 ? a[0]
                 : U == 2 ? _mm512_add_ps(a[0], a[1])
                          : _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
      out[(i / NK) * lds + i % NK] = scale * hsum512(t);
    }
  }
}

// o_r += sum_j P[r * ldp + j] * v_j (see pv_rows), value rows stored as T: R * U = 16
// accumulators of o stay in registers while the value rows stream past.
template <int R, class T>
TOPK_TARGET TOPK_INLINE void pv_rows512(float* o, int64_t ldo, const float* P, int64_t ldp,
                                        const T* const* v, int nk, int D) {
  constexpr int U = R >= 4 ? 4 : (R == 1 ? 8 : (R == 2 ? 8 : 4));
  int d = 0;
  for (; d + 16 * U <= D; d += 16 * U) {
    __m512 acc[R][U];
    for (int r = 0; r < R; r++)
      for (int u = 0; u < U; u++) acc[r][u] = _mm512_loadu_ps(o + r * ldo + d + 16 * u);
    for (int j = 0; j < nk; j++) {
      __m512 pr[R];
      for (int r = 0; r < R; r++) pr[r] = _mm512_set1_ps(P[r * ldp + j]);
      for (int u = 0; u < U; u++) {
        __m512 vv = load16(v[j] + d + 16 * u);
        for (int r = 0; r < R; r++) acc[r][u] = _mm512_fmadd_ps(pr[r], vv, acc[r][u]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int u = 0; u < U; u++) _mm512_storeu_ps(o + r * ldo + d + 16 * u, acc[r][u]);
  }
  for (; d < D; d += 16) {
    __mmask16 m = lanes(std::min(16, D - d));
    __m512 acc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm512_maskz_loadu_ps(m, o + r * ldo + d);
    for (int j = 0; j < nk; j++) {
      __m512 vv = load16(m, v[j] + d);
      for (int r = 0; r < R; r++)
        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(P[r * ldp + j]), vv, acc[r]);
    }
    for (int r = 0; r < R; r++) _mm512_mask_storeu_ps(o + r * ldo + d, m, acc[r]);
  }
}

// acc[0..D) += sum_i P[i] * v_i over n value rows v_i = v + idx[i] * stride (elements, stored
// as T), one row at a time with the accumulator in registers (D <= 256), prefetching the row
// `ahead` places ahead: a steady trickle of prefetches for this latency-bound gather, where
// blocks of rows would issue them in bursts that fill the miss queue. NV = ceil(D / 16) is a
// compile-time count: with runtime bounds and masks on every vector the same loop gathered
// ~1.5x slower (top-k decode, S = 32K: 0.8 vs 0.5 ms per thread).
template <int NV, class T>
TOPK_TARGET TOPK_INLINE void gather_pv512_n(float* acc, const float* P, const int32_t* idx,
                                            int64_t n, const T* v, int64_t stride, int D,
                                            int ahead) {
  constexpr int kLines = (NV * 16 * int(sizeof(T)) + 63) / 64;  // cache lines of a row
  const __mmask16 tail = lanes(D - 16 * (NV - 1));
  __m512 a[NV];
#pragma GCC unroll 16
  for (int u = 0; u < NV - 1; u++) a[u] = _mm512_loadu_ps(acc + 16 * u);
  a[NV - 1] = _mm512_maskz_loadu_ps(tail, acc + 16 * (NV - 1));
  for (int64_t i = 0; i < n; i++) {
    if (i + ahead < n) {
      const char* r = reinterpret_cast<const char*>(v + idx[i + ahead] * stride);
#pragma GCC unroll 16
      for (int b = 0; b < kLines; b++) _mm_prefetch(r + 64 * b, _MM_HINT_T0);
    }
    const T* r = v + idx[i] * stride;
    const __m512 pi = _mm512_set1_ps(P[i]);
#pragma GCC unroll 16
    for (int u = 0; u < NV - 1; u++) a[u] = _mm512_fmadd_ps(pi, load16(r + 16 * u), a[u]);
    a[NV - 1] = _mm512_fmadd_ps(pi, load16(tail, r + 16 * (NV - 1)), a[NV - 1]);
  }
#pragma GCC unroll 16
  for (int u = 0; u < NV - 1; u++) _mm512_storeu_ps(acc + 16 * u, a[u]);
  _mm512_mask_storeu_ps(acc + 16 * (NV - 1), tail, a[NV - 1]);
}

// gather_pv512_n for the NV of D (1 <= D <= 256).
template <class T, int NV = 1>
TOPK_TARGET inline void gather_pv512(float* acc, const float* P, const int32_t* idx, int64_t n,
                                     const T* v, int64_t stride, int D, int ahead) {
  if constexpr (NV <= 16) {
    if ((D + 15) / 16 == NV)
      gather_pv512_n<NV>(acc, P, idx, n, v, stride, D, ahead);
    else
      gather_pv512<T, NV + 1>(acc, P, idx, n, v, stride, D, ahead);
  }
}

}  // namespace topk::cpu::TOPK_ISA
