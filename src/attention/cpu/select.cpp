// CPU top-k select: rows in parallel, each by radix select (see select.h).
#include "attention/cpu/select.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>

#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {
namespace {

// Order-preserving maps: a ranks before b (by value) iff key(a) > key(b); -0 equals +0; NaN is
// 0, below every number including -inf. The f32 one is the kernels' shared rule
// (select_rule.h); the f64 one (group sharing ranks probability sums) follows it. Branch-free:
// score signs are random, a branch here would mispredict.
using topk::order_key;
TOPK_TARGET inline uint64_t order_key(double f) {
  double z = f + 0.0;
  uint64_t u;
  std::memcpy(&u, &z, 8);
  uint64_t flip = uint64_t(int64_t(u) >> 63) | (1ull << 63);
  return f != f ? 0ull : u ^ flip;
}

// Keys of a whole row. The f32 one is explicit AVX2: the compiler keeps the NaN test scalar.
TOPK_TARGET inline void keys_of(const float* x, int64_t n, uint32_t* out) {
  int64_t i = 0;
#if TOPK_SIMD >= 256
  const __m256 zero = _mm256_setzero_ps();
  const __m256i top = _mm256_set1_epi32(int(0x80000000u));
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256i u = _mm256_castps_si256(_mm256_add_ps(v, zero));
    __m256i k = _mm256_xor_si256(u, _mm256_or_si256(_mm256_srai_epi32(u, 31), top));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_andnot_si256(nan, k));
  }
#endif
  for (; i < n; i++) out[i] = order_key(x[i]);
}
TOPK_TARGET inline void keys_of(const double* x, int64_t n, uint64_t* out) {
  for (int64_t i = 0; i < n; i++) out[i] = order_key(x[i]);
}

constexpr int kDigit = 11;  // radix bits per pass: a 2048-bin histogram (8 KiB) stays in L1
constexpr int kShortDigit = 8;  // for fewer than kShortKeys keys: clearing and scanning 2048
constexpr size_t kShortKeys = 1024;  // bins cost more than counting the keys
constexpr size_t kSortMax = 32;  // this few keys are sorted outright
constexpr int64_t kLinearMin = 128;  // rows at least this long take select_linear
constexpr int64_t kSampledMin = 8192;  // and select_sampled first (AVX-512), for small budgets

// Picks the bin (from the top) that holds the room-th best key; room becomes the rank inside it.
TOPK_TARGET inline uint32_t pick_bin(const uint32_t* hist, int nbins, int64_t& room) {
  int64_t cum = 0;
  int b = nbins - 1;
  for (; b > 0; b--) {
    if (cum + hist[b] >= room) break;
    cum += hist[b];
  }
  room -= cum;
  return uint32_t(b);
}

// The room-th best of keys[0, nk) (1 <= room <= nk) by sorting them: tau, and how many keys
// equal to tau are taken.
template <class U>
TOPK_TARGET void resolve_sorted(U* keys, size_t nk, int64_t room, U& tau, int64_t& take_eq) {
  std::sort(keys, keys + nk, std::greater<U>());
  tau = keys[room - 1];
  int64_t above = room - 1;  // keys before the first one equal to tau are above it
  while (above > 0 && keys[above - 1] == tau) above--;
  take_eq = room - above;
}

// The room-th best of a short list of keys, digit by digit until few are left, then sorted:
// tau, and how many keys equal to tau are taken (the first by index). keys is consumed.
template <class U>
TOPK_TARGET void resolve(std::vector<U>& keys, int64_t room, U& tau, int64_t& take_eq) {
  constexpr int bits = int(sizeof(U) * 8);
  uint32_t hist[1 << kDigit];
  U prefix = 0;
  size_t nk = keys.size();
  for (int shift = bits; shift > 0;) {
    if (nk <= kSortMax) return resolve_sorted(keys.data(), nk, room, tau, take_eq);
    const int digit = nk < kShortKeys ? kShortDigit : kDigit;
    int w = shift < digit ? shift : digit;
    shift -= w;
    U mask = (U(1) << w) - 1;
    std::memset(hist, 0, sizeof(uint32_t) << w);
    for (size_t j = 0; j < nk; j++) hist[(keys[j] >> shift) & mask]++;
    U d = U(pick_bin(hist, 1 << w, room));
    prefix |= d << shift;
    size_t k = 0;
    for (size_t j = 0; j < nk; j++) {
      keys[k] = keys[j];
      k += ((keys[j] >> shift) & mask) == d;
    }
    nk = k;
  }
  tau = prefix;
  take_eq = room;
}

// Writes idx[j] of the keys above tau and of the first take_eq keys equal to it, in order, to
// out[0..room); returns how many. Branch-free: about half the keys are taken, in no predictable
// pattern. (Each key is written at out[c] and kept by advancing c; once room are taken the
// writes go to a dummy, so nothing past out[room - 1] is touched.)
TOPK_TARGET inline int64_t emit_selected(const uint32_t* keys, const int32_t* idx, int64_t m,
                                         uint32_t tau, int64_t take_eq, int64_t room,
                                         int32_t* out) {
  int64_t c = 0;
  int32_t dummy;
  for (int64_t j = 0; j < m; j++) {
    int64_t eq = keys[j] == tau, take = (keys[j] > tau) | (eq & (take_eq > 0));
    take_eq -= eq & take;
    int32_t* dst = c < room ? out + c : &dummy;
    *dst = idx[j];
    c += take;
  }
  return c;
}

// Selects `room` of the candidates x[lo..hi) and appends their indices, ascending, to out.
//  A: keys of every candidate and a histogram of the top digit (4 interleaved histograms on
//     long rows, so runs of equal bins do not serialise on one counter);
//  B: keep (key, index) of the candidates at or above the boundary bin, in index order;
//  C: resolve the boundary bin digit by digit over its keys alone: threshold tau, and how
//     many keys equal to tau are taken (the first by index);
//  D: emit from the kept pairs only.
template <class U, class F>
TOPK_TARGET int64_t select_candidates(const F* x, int64_t lo, int64_t hi, int64_t room,
                                      int32_t* out, std::vector<U>& keys, std::vector<U>& buf,
                                      std::vector<int32_t>& idx) {
  constexpr int bits = int(sizeof(U) * 8);
  int64_t n = hi - lo;
  keys.resize(size_t(n));
  keys_of(x + lo, n, keys.data());
  int shift = bits - kDigit;
  const int nh = n >= 8192 ? 4 : 1;
  static thread_local uint32_t hist[4][1 << kDigit];
  std::memset(hist, 0, sizeof(uint32_t) * nh << kDigit);
  int64_t i = 0;
  if (nh == 4)
    for (; i + 4 <= n; i += 4)
      for (int h = 0; h < 4; h++) hist[h][keys[i + h] >> shift]++;
  for (; i < n; i++) hist[0][keys[i] >> shift]++;
  for (int h = 1; h < nh; h++)
    for (int b = 0; b < (1 << kDigit); b++) hist[0][b] += hist[h][b];
  U b = U(pick_bin(hist[0], 1 << kDigit, room));
  U lowest = b << shift;  // every kept key is >= this
  // B: the condition is rarely true (about W of n keys), so a branch predicts well.
  buf.resize(size_t(n));
  idx.resize(size_t(n));
  size_t m = 0;
  for (int64_t j = 0; j < n; j++) {
    if (keys[j] >= lowest) {
      buf[m] = keys[j];
      idx[m++] = int32_t(lo + j);
    }
  }
  // C: the boundary bin's keys (into keys[], no longer needed).
  size_t nb = 0;
  for (size_t j = 0; j < m; j++) {
    keys[nb] = buf[j];
    nb += (buf[j] >> shift) == b;
  }
  keys.resize(nb);
  U tau;
  int64_t take_eq;
  resolve(keys, room, tau, take_eq);
  int64_t c = 0;
  for (size_t j = 0; j < m; j++)
    if (buf[j] > tau || (buf[j] == tau && take_eq-- > 0)) out[c++] = idx[j];
  return c;
}

#if TOPK_SIMD >= 256
// The f32 path for rows of kLinearMin keys or more. The top bits of a float key bunch normal
// scores into a few dozen bins (one per binade), so that histogram serialises on a handful of
// counters. Instead the
// first pass buckets linearly between the row's finite min and max: bin(x) = (x - min) * inv,
// clamped, is monotone in x (every step rounds monotonically), so a higher bin means a strictly
// higher score and only the boundary bin needs the exact keys. NaN and -inf land in bin 0, +inf
// in the top bin; the exact keys order them inside it. Returns -1 when the row has no spread
// (no finite values, or all equal): the caller takes the radix path.
TOPK_TARGET int64_t select_linear(const float* x, int64_t lo, int64_t hi, int64_t room,
                                  int32_t* out, std::vector<uint16_t>& bins,
                                  std::vector<uint32_t>& keys, std::vector<int32_t>& idx) {
  // Short rows: 256 bins (clearing and scanning 2048 cost more than the row), one histogram.
  const int64_t n = hi - lo;
  const int nb = n < 4096 ? 256 : 2048, nh = n >= 8192 ? 4 : 1;
  const float* y = x + lo;
  int64_t i = 0;
  const __m256 inf = _mm256_set1_ps(kInfF), sign = _mm256_set1_ps(-0.0f);
  __m256 vmin = inf, vmax = _mm256_sub_ps(_mm256_setzero_ps(), inf);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(y + i);
    __m256 fin = _mm256_cmp_ps(_mm256_andnot_ps(sign, v), inf, _CMP_LT_OQ);  // false for NaN, inf
    vmin = _mm256_min_ps(vmin, _mm256_blendv_ps(inf, v, fin));
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(_mm256_sub_ps(_mm256_setzero_ps(), inf), v, fin));
  }
  alignas(32) float a[8], b[8];
  _mm256_store_ps(a, vmin);
  _mm256_store_ps(b, vmax);
  float mn = kInfF, mx = -kInfF;
  for (int l = 0; l < 8; l++) mn = std::min(mn, a[l]), mx = std::max(mx, b[l]);
  for (; i < n; i++)
    if (std::fabs(y[i]) < kInfF) mn = std::min(mn, y[i]), mx = std::max(mx, y[i]);
  if (!(mx > mn)) return -1;
  float inv = float(nb - 1) / (mx - mn);
  if (!(inv < kInfF)) return -1;
  // Bins and a histogram (4 interleaved counters per bin on long rows).
  bins.resize(size_t(n) + 16);
  uint32_t hist[4][2048];
  for (int h = 0; h < nh; h++) std::memset(hist[h], 0, sizeof(uint32_t) * size_t(nb));
  const __m256 vmn = _mm256_set1_ps(mn), vinv = _mm256_set1_ps(inv),
               top = _mm256_set1_ps(float(nb - 1)), zero = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y + i), vmn), vinv);
    t = _mm256_min_ps(_mm256_max_ps(t, zero), top);  // max(NaN, 0) = 0
    __m256i b32 = _mm256_cvttps_epi32(t);
    __m128i b16 = _mm_packus_epi32(_mm256_castsi256_si128(b32), _mm256_extracti128_si256(b32, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(&bins[i]), b16);
  }
  for (; i < n; i++) {
    float t = (y[i] - mn) * inv;
    t = t != t ? 0.0f : std::min(std::max(t, 0.0f), float(nb - 1));
    bins[i] = uint16_t(t);
  }
  i = 0;
  if (nh == 4)
    for (; i + 4 <= n; i += 4)
      for (int h = 0; h < 4; h++) hist[h][bins[i + h]]++;
  for (; i < n; i++) hist[0][bins[i]]++;
  for (int h = 1; h < nh; h++)
    for (int k = 0; k < nb; k++) hist[0][k] += hist[h][k];
  int bb = int(pick_bin(hist[0], nb, room));
  // Indices of bins >= bb in index order, 16 bins per compare.
  idx.clear();
  const __m256i lim = _mm256_set1_epi16(int16_t(bb - 1));
  for (i = 0; i + 16 <= n; i += 16) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&bins[i]));
    uint32_t m = uint32_t(_mm256_movemask_epi8(_mm256_cmpgt_epi16(v, lim))) & 0x55555555u;
    while (m) {
      idx.push_back(int32_t(i + (__builtin_ctz(m) >> 1)));
      m &= m - 1;
    }
  }
  for (; i < n; i++)
    if (bins[i] >= bb) idx.push_back(int32_t(i));
  // Exact keys of the boundary bin; everything above it is taken.
  keys.clear();
  for (int32_t j : idx)
    if (bins[j] == bb) keys.push_back(order_key(y[j]));
  uint32_t tau = 0;
  int64_t take_eq = 0;
  resolve(keys, room, tau, take_eq);
  int64_t c = 0;
  for (int32_t j : idx) {
    bool take = bins[j] > bb;
    if (!take) {
      uint32_t k = order_key(y[j]);
      take = k > tau || (k == tau && take_eq-- > 0);
    }
    if (take) out[c++] = int32_t(lo + j);
  }
  return c;
}
#endif

#if TOPK_SIMD == 512
// Buckets of select_linear for 16 scores: (x - mn) * inv, clamped to [0, nb - 1]; NaN -> 0.
TOPK_TARGET TOPK_INLINE __m512i buckets512(__m512 v, __m512 mn, __m512 inv, __m512 top) {
  __m512 t = _mm512_mul_ps(_mm512_sub_ps(v, mn), inv);
  return _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(t, _mm512_setzero_ps()), top));
}

// Long rows with a small budget (AVX-512): the buckets of select_linear, but the one that must
// hold the room-th best is read off a histogram of a 1/8 sample, low enough that it and the
// buckets above almost always hold more than room scores. One vector pass keeps those scores
// (a bucket below holds only lower scores: the buckets are monotone), a count checks that at
// least room were kept (else -1, and the caller takes select_linear), and the exact room best
// are resolved among the kept ones alone: no histogram over the whole row.
TOPK_TARGET int64_t select_sampled(const float* x, int64_t lo, int64_t hi, int64_t room,
                                   int32_t* out, std::vector<uint32_t>& tmp) {
  constexpr int nb = 2048, kEvery = 128;  // the sample: the first 16 of every 128 scores
  const float* y = x + lo;
  int64_t n = hi - lo;
  const __m512 inf = _mm512_set1_ps(kInfF);
  __m512 vmin = inf, vmax = _mm512_sub_ps(_mm512_setzero_ps(), inf);
  // The rows are usually out of cache (written with streaming stores): both passes prefetch.
  for (int64_t b = 0; b + 16 <= n; b += kEvery) {
    _mm_prefetch(reinterpret_cast<const char*>(y + b + 16 * kEvery), _MM_HINT_T0);
    __m512 v = _mm512_loadu_ps(y + b);
    __mmask16 fin = _mm512_cmp_ps_mask(_mm512_abs_ps(v), inf, _CMP_LT_OQ);  // not NaN or inf
    vmin = _mm512_mask_min_ps(vmin, fin, vmin, v);
    vmax = _mm512_mask_max_ps(vmax, fin, vmax, v);
  }
  float mn = -hmax512(_mm512_sub_ps(_mm512_setzero_ps(), vmin)), mx = hmax512(vmax);
  if (!(mx > mn)) return -1;
  float inv = float(nb - 1) / (mx - mn);
  if (!(inv < kInfF)) return -1;
  const __m512 vmn = _mm512_set1_ps(mn), vinv = _mm512_set1_ps(inv), top = _mm512_set1_ps(nb - 1);
  uint32_t hist[nb] = {};
  int64_t ns = 0;
  for (int64_t b = 0; b + 16 <= n; b += kEvery, ns += 16) {
    alignas(64) int32_t bi[16];
    _mm512_store_si512(bi, buckets512(_mm512_loadu_ps(y + b), vmn, vinv, top));
    for (int i = 0; i < 16; i++) hist[bi[i]]++;
  }
  int64_t want = room * ns / n + room * ns / n / 4 + 16;  // the sample's share, and a margin
  int bb = nb - 1;
  for (int64_t cum = 0; bb > 0; bb--) {
    cum += hist[bb];
    if (cum >= want) break;
  }
  // Kept (key, index) pairs: at most n, usually ~1.4 room. Not zero-filled, kept per thread.
  static thread_local RawBuf<uint32_t> key_buf;
  static thread_local RawBuf<int32_t> idx_buf;
  uint32_t* keys = key_buf.get(size_t(n) + 16);
  int32_t* idx = idx_buf.get(size_t(n) + 16);
  const __m512i vbb = _mm512_set1_epi32(bb);
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t m = 0;
  for (int64_t i = 0; i < n; i += 16) {
    _mm_prefetch(reinterpret_cast<const char*>(y + i + 512), _MM_HINT_T0);
    __mmask16 in = lanes(int(std::min<int64_t>(16, n - i)));
    __m512 v = _mm512_maskz_loadu_ps(in, y + i);
    __mmask16 keep = _mm512_mask_cmpge_epi32_mask(in, buckets512(v, vmn, vinv, top), vbb);
    // No branch on keep: it is unpredictable, and each miss would stall the loads behind it.
    __m512i j = _mm512_add_epi32(iota, _mm512_set1_epi32(int32_t(lo + i)));
    _mm512_storeu_si512(keys + m, _mm512_maskz_compress_epi32(keep, score_keys512(v)));
    _mm512_storeu_si512(idx + m, _mm512_maskz_compress_epi32(keep, j));
    m += __builtin_popcount(keep);
  }
  if (m < room) return -1;
  tmp.assign(keys, keys + m);
  uint32_t tau;
  int64_t take_eq;
  resolve(tmp, room, tau, take_eq);
  return emit_selected(keys, idx, m, tau, take_eq, room, out);
}
#endif

template <class U, class F>
TOPK_TARGET void select_impl(const F* x, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                             std::vector<U>& keys, std::vector<U>& buf, std::vector<int32_t>& idx,
                             SelectScratch& w) {
  int64_t W = select_budget(sel, n);
  int64_t lo = std::min<int64_t>(sel.sink, n);                 // candidates: [lo, hi)
  int64_t hi = std::max<int64_t>(n - int64_t(sel.window), lo);
  int64_t room = W - (n - (hi - lo));
  int64_t c = 0;
  for (int64_t j = 0; j < lo; j++) out[c++] = int32_t(j);
  if (room >= hi - lo) {
    for (int64_t j = lo; j < hi; j++) out[c++] = int32_t(j);
  } else if (room > 0) {
    int64_t got = -1;
#if TOPK_SIMD == 512
    if constexpr (std::is_same_v<F, float>)
      if (hi - lo >= kSampledMin && 8 * room <= hi - lo)
        got = select_sampled(x, lo, hi, room, out + c, w.k32);
#endif
#if TOPK_SIMD >= 256
    if constexpr (std::is_same_v<F, float>)
      if (got < 0 && hi - lo >= kLinearMin)
        got = select_linear(x, lo, hi, room, out + c, w.bins, w.k32, w.idx);
#endif
    if (got < 0) got = select_candidates<U>(x, lo, hi, room, out + c, keys, buf, idx);
    c += got;
  }
  for (int64_t j = hi; j < n; j++) out[c++] = int32_t(j);
  for (int64_t i = c; i < K; i++) out[i] = -1;
}

}  // namespace

TOPK_TARGET void select_row(const float* score, int64_t n, const SelectOpts& sel, int32_t* out,
                            int64_t K, SelectScratch& w) {
  select_impl<uint32_t>(score, n, sel, out, K, w.k32, w.b32, w.idx, w);
}

TOPK_TARGET void select_row(const double* rank, int64_t n, const SelectOpts& sel, int32_t* out,
                            int64_t K, SelectScratch& w) {
  select_impl<uint64_t>(rank, n, sel, out, K, w.k64, w.b64, w.idx, w);
}

TOPK_TARGET void group_rank(const float* scores, int64_t ld, int G, int64_t n, double* rank) {
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; j++) rank[j] = 0.0;
  if (n == 0) return;
  for (int g = 0; g < G; g++) {
    const float* row = scores + g * ld;
    // The reference's softmax, operation for operation (no reassociation, no SIMD exp).
    double m = -inf;
    for (int64_t j = 0; j < n; j++) {
      double x = row[j];
      m = x > m ? x : m;
    }
    if (m == -inf) continue;  // every probability is 0
    double l = 0;
    for (int64_t j = 0; j < n; j++) l += std::exp(double(row[j]) - m);
    double lse = m + std::log(l);
    for (int64_t j = 0; j < n; j++) rank[j] += std::exp(double(row[j]) - lse);
  }
}

TOPK_TARGET void topk_select(const SelectParams& sp) {
  const AttnParams& p = sp.a;
  int G = p.Hq / sp.Hsel;
  std::vector<std::pair<int, int64_t>> qrows;  // (sequence, t)
  for (int si = 0; si < p.nseq; si++)
    for (int64_t t = 0; t < p.seqs[si].T; t++) qrows.push_back({si, t});
  int64_t nrows = int64_t(qrows.size()) * sp.Hsel;
#pragma omp parallel
  {
    SelectScratch w;
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < nrows; i++) {
      const SeqDesc& s = p.seqs[qrows[i / sp.Hsel].first];
      int64_t t = qrows[i / sp.Hsel].second;
      int hs = int(i % sp.Hsel);
      int64_t n = p.visible(s, t);
      const float* row = sp.scores + (p.qrow(s, t) * p.Hq + int64_t(hs) * G) * p.Smax;
      int32_t* out = sp.out + (p.qrow(s, t) * sp.Hsel + hs) * sp.K;
      if (G == 1) {
        select_row(row, n, sp.sel, out, sp.K, w);
      } else {
        w.rank.resize(n);
        group_rank(row, p.Smax, G, n, w.rank.data());
        select_row(w.rank.data(), n, sp.sel, out, sp.K, w);
      }
    }
  }
}

}  // namespace topk::cpu::TOPK_ISA
