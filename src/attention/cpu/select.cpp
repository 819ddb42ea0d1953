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

constexpr int kDigit = 11;  // radix bits per pass: a 2048-bin histogram (8 KiB) stays in L1

// Finds the key tau of the room-th best candidate among x[lo..hi) and how many keys equal to
// tau are taken (the first ones by index): all keys > tau plus take_eq keys == tau make room.
template <class U, class F>
void threshold(const F* x, int64_t lo, int64_t hi, int64_t room, std::vector<U>& buf, U& tau,
               int64_t& take_eq) {
  constexpr int bits = int(sizeof(U) * 8);
  uint32_t hist[1 << kDigit];
  int shift = bits - kDigit;
  U prefix = 0;
  // First digit straight from the scores; later digits over the keys of the chosen bucket.
  std::memset(hist, 0, sizeof(hist));
  for (int64_t j = lo; j < hi; j++) hist[order_key(x[j]) >> shift]++;
  auto pick = [&](int nbins) {
    int64_t cum = 0;
    int b = nbins - 1;
    for (; b > 0; b--) {
      if (cum + hist[b] >= room) break;
      cum += hist[b];
    }
    room -= cum;
    return b;
  };
  U b = U(pick(1 << kDigit));
  prefix = b << shift;
  buf.clear();
  for (int64_t j = lo; j < hi; j++) {
    U k = order_key(x[j]);
    if ((k >> shift) == b) buf.push_back(k);
  }
  while (shift > 0) {
    int nb = shift < kDigit ? shift : kDigit;
    shift -= nb;
    U mask = (U(1) << nb) - 1;
    std::memset(hist, 0, sizeof(uint32_t) << nb);
    for (U k : buf) hist[(k >> shift) & mask]++;
    U d = U(pick(1 << nb));
    prefix |= d << shift;
    size_t m = 0;
    for (U k : buf)
      if (((k >> shift) & mask) == d) buf[m++] = k;
    buf.resize(m);
  }
  tau = prefix;
  take_eq = room;
}

template <class U, class F>
void select_impl(const F* x, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                 std::vector<U>& buf) {
  int64_t W = select_budget(sel, n);
  int64_t lo = std::min<int64_t>(sel.sink, n);                 // candidates: [lo, hi)
  int64_t hi = std::max<int64_t>(n - int64_t(sel.window), lo);
  int64_t room = W - (n - (hi - lo));
  int64_t c = 0;
  auto emit_range = [&](int64_t a, int64_t b) {
    for (int64_t j = a; j < b; j++) out[c++] = int32_t(j);
  };
  emit_range(0, lo);
  if (room >= hi - lo) {
    emit_range(lo, hi);
  } else if (room > 0) {
    U tau;
    int64_t take_eq;
    threshold<U>(x, lo, hi, room, buf, tau, take_eq);
    for (int64_t j = lo; j < hi; j++) {
      U k = order_key(x[j]);
      if (k > tau || (k == tau && take_eq-- > 0)) out[c++] = int32_t(j);
    }
  }
  emit_range(hi, n);
  for (int64_t i = c; i < K; i++) out[i] = -1;
}

}  // namespace

void select_row(const float* score, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                SelectScratch& w) {
  select_impl<uint32_t>(score, n, sel, out, K, w.k32);
}

void select_row(const double* rank, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                SelectScratch& w) {
  select_impl<uint64_t>(rank, n, sel, out, K, w.k64);
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
