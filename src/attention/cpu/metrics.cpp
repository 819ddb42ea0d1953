// CPU attention metrics over full attention. For blocks of queries: the block's score rows
// (fp32, keys in parallel chunks, K streamed once), then per row a softmax accumulated in
// double. Entropy uses ln a_j = s_j - lse, so it needs one exp per key and no log.
#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {
namespace {

constexpr int64_t kScoreFloats = int64_t(1) << 22;  // score block cap: 16 MiB
constexpr int kMaxTb = 64;
constexpr int64_t kChunk = 512;

// Calls fn(s, t, h, row, n) for every query row with its n visible fp32 scores.
template <class Fn>
TOPK_TARGET void for_rows(const AttnParams& p, Fn fn) {
  // Kept between calls by the calling thread: a decode loop reuses the same pages.
  static thread_local RawBuf<float> sc_buf, q_buf;
  for (int si = 0; si < p.nseq; si++) {
    const SeqDesc& s = p.seqs[si];
    // Padded row stride: rows a power of two apart would share one L1 set.
    int64_t ld = s.S + 16;
    int Tb = int(std::clamp<int64_t>(kScoreFloats / (int64_t(p.Hq) * ld), 1, kMaxTb));
    float* Sc = sc_buf.get(size_t(Tb) * p.Hq * ld);
    float* Q = q_buf.get(size_t(Tb) * p.Hq * p.D);
    for (int64_t t0 = 0; t0 < s.T; t0 += Tb) {
      int nt = int(std::min<int64_t>(Tb, s.T - t0));
      int64_t vis = p.visible(s, t0 + nt - 1);
      load_q(p, s, t0, nt, 0, p.Hkv, Q);
      int64_t nchunk = (vis + kChunk - 1) / kChunk;
#pragma omp parallel
      {
        std::vector<float> kbuf(kKeys * p.D), tile(size_t(nt) * p.Hq * kTile);
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < nchunk; c++) {
          int64_t jb = std::min(vis, (c + 1) * kChunk);
          score_rows(p, s, Q, nt, 0, p.Hkv, c * kChunk, jb, Sc, ld, tile.data(), kbuf.data(), jb);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < int64_t(nt) * p.Hq; i++) {
          int64_t t = t0 + i / p.Hq;
          fn(s, t, int(i % p.Hq), Sc + i * ld, p.visible(s, t));
        }
      }
    }
  }
}

// lse of a row in double (+inf when no key carries weight).
TOPK_TARGET double row_lse(const float* x, int64_t n) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
  if (m == -std::numeric_limits<double>::infinity()) return std::numeric_limits<double>::infinity();
  double l = 0;
  for (int64_t j = 0; j < n; j++) l += std::exp(double(x[j]) - m);
  return m + std::log(l);
}

}  // namespace

TOPK_TARGET void entropy(const AttnParams& p, float* entropy, float* normalized) {
  for_rows(p, [&](const SeqDesc& s, int64_t t, int h, const float* x, int64_t n) {
    double lse = row_lse(x, n), H = 0;
    for (int64_t j = 0; j < n; j++) {
      double a = std::exp(double(x[j]) - lse);
      if (a > 0) H -= a * (double(x[j]) - lse);
    }
    if (n <= 1) H = 0;
    int64_t r = p.qrow(s, t) * p.Hq + h;
    entropy[r] = float(H);
    if (normalized) normalized[r] = n > 1 ? float(H / std::log(double(n))) : 0.0f;
  });
}

TOPK_TARGET void selection_mass(const AttnParams& p, float* mass) {
  int G = p.group();
  for_rows(p, [&](const SeqDesc& s, int64_t t, int h, const float* x, int64_t n) {
    int hs = p.Hsel == p.Hq ? h : h / G;
    const int32_t* row = p.idx + (p.qrow(s, t) * p.Hsel + hs) * p.K;
    double lse = row_lse(x, n), m = 0;
    // Duplicates count once.
    std::vector<uint8_t> seen(size_t(n), 0);
    for (int64_t c = 0; c < p.K; c++) {
      int32_t j = row[c];
      if (j < 0 || j >= s.S || j >= n || seen[j]) continue;
      seen[j] = 1;
      m += std::exp(double(x[j]) - lse);
    }
    mass[p.qrow(s, t) * p.Hq + h] = float(m);
  });
}

}  // namespace topk::cpu::TOPK_ISA
