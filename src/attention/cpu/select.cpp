// CPU top-k select: rows in parallel, each by radix select (see select.h).
#include "attention/cpu/select.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "attention/cpu/common.h"

namespace topk::cpu {
namespace {

// Order-preserving maps: a ranks before b (by value) iff key(a) > key(b). -0 equals +0 (the
// reference compares with ==; adding +0 turns -0 into +0); NaN is 0, below every number
// including -inf. Branch-free: score signs are random, a branch here would mispredict.
inline uint32_t order_key(float f) {
  float z = f + 0.0f;
  uint32_t u;
  std::memcpy(&u, &z, 4);
  uint32_t flip = uint32_t(int32_t(u) >> 31) | 0x80000000u;
  return f != f ? 0u : u ^ flip;
}
inline uint64_t order_key(double f) {
  double z = f + 0.0;
  uint64_t u;
  std::memcpy(&u, &z, 8);
  uint64_t flip = uint64_t(int64_t(u) >> 63) | (1ull << 63);
  return f != f ? 0ull : u ^ flip;
}

// Keys of a whole row. The f32 one is explicit AVX2: the compiler keeps the NaN test scalar.
inline void keys_of(const float* x, int64_t n, uint32_t* out) {
  int64_t i = 0;
#ifdef __AVX2__
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
inline void keys_of(const double* x, int64_t n, uint64_t* out) {
  for (int64_t i = 0; i < n; i++) out[i] = order_key(x[i]);
}

constexpr int kDigit = 11;  // radix bits per pass: a 2048-bin histogram (8 KiB) stays in L1

// Picks the bin (from the top) that holds the room-th best key; room becomes the rank inside it.
inline uint32_t pick_bin(const uint32_t* hist, int nbins, int64_t& room) {
  int64_t cum = 0;
  int b = nbins - 1;
  for (; b > 0; b--) {
    if (cum + hist[b] >= room) break;
    cum += hist[b];
  }
  room -= cum;
  return uint32_t(b);
}

// Selects `room` of the candidates x[lo..hi) and appends their indices, ascending, to out.
//  A: keys of every candidate and a histogram of the top digit (4 interleaved histograms on
//     long rows, so runs of equal bins do not serialise on one counter);
//  B: keep (key, index) of the candidates at or above the boundary bin, in index order;
//  C: resolve the boundary bin digit by digit over its keys alone: threshold tau, and how
//     many keys equal to tau are taken (the first by index);
//  D: emit from the kept pairs only.
template <class U, class F>
int64_t select_candidates(const F* x, int64_t lo, int64_t hi, int64_t room, int32_t* out,
                          std::vector<U>& keys, std::vector<U>& buf, std::vector<int32_t>& idx) {
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
  U prefix = lowest;
  while (shift > 0) {
    int w = shift < kDigit ? shift : kDigit;
    shift -= w;
    U mask = (U(1) << w) - 1;
    std::memset(hist[0], 0, sizeof(uint32_t) << w);
    for (size_t j = 0; j < nb; j++) hist[0][(keys[j] >> shift) & mask]++;
    U d = U(pick_bin(hist[0], 1 << w, room));
    prefix |= d << shift;
    size_t k = 0;
    for (size_t j = 0; j < nb; j++) {
      keys[k] = keys[j];
      k += ((keys[j] >> shift) & mask) == d;
    }
    nb = k;
  }
  U tau = prefix;
  int64_t take_eq = room, c = 0;
  for (size_t j = 0; j < m; j++)
    if (buf[j] > tau || (buf[j] == tau && take_eq-- > 0)) out[c++] = idx[j];
  return c;
}

template <class U, class F>
void select_impl(const F* x, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                 std::vector<U>& keys, std::vector<U>& buf, std::vector<int32_t>& idx) {
  int64_t W = select_budget(sel, n);
  int64_t lo = std::min<int64_t>(sel.sink, n);                 // candidates: [lo, hi)
  int64_t hi = std::max<int64_t>(n - int64_t(sel.window), lo);
  int64_t room = W - (n - (hi - lo));
  int64_t c = 0;
  for (int64_t j = 0; j < lo; j++) out[c++] = int32_t(j);
  if (room >= hi - lo) {
    for (int64_t j = lo; j < hi; j++) out[c++] = int32_t(j);
  } else if (room > 0) {
    c += select_candidates<U>(x, lo, hi, room, out + c, keys, buf, idx);
  }
  for (int64_t j = hi; j < n; j++) out[c++] = int32_t(j);
  for (int64_t i = c; i < K; i++) out[i] = -1;
}

}  // namespace

void select_row(const float* score, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                SelectScratch& w) {
  select_impl<uint32_t>(score, n, sel, out, K, w.k32, w.b32, w.idx);
}

void select_row(const double* rank, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                SelectScratch& w) {
  select_impl<uint64_t>(rank, n, sel, out, K, w.k64, w.b64, w.idx);
}

void group_rank(const float* scores, int64_t ld, int G, int64_t n, double* rank) {
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

void topk_select(const SelectParams& sp) {
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

}  // namespace topk::cpu
