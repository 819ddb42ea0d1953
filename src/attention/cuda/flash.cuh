// Shared pieces of the FlashAttention-2-style kernels of prefill and training
// (flash_forward.cu, flash_backward.cu): tile lists over the sequences, swizzled 16-bit tiles
// in shared memory, their ldmatrix fragment addresses, and m16n8k16 products of bf16 or f16.
//
// Tiles in shared memory hold rows of D 16-bit elements unpadded (D / 8 = 8, 16 or 32 chunks of
// 16 bytes), chunk c of row r at chunk c ^ (r % 8) (swizzled_chunk, common.cuh): ldmatrix over
// 8 consecutive rows then hits 8 different bank groups.
#pragma once
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"

namespace topk::cuda {

// Rows [r0, r0 + tile) of sequence seq: query rows (forward, dQ) or key rows (dK/dV).
struct FlashTile {
  int32_t seq, r0;
};

// Tiles of `rows` query rows (by_keys false) or key rows (true) of every sequence, the most
// work first: under a causal mask the tiles of one sequence differ in work up to T / rows
// times, and the longest ones started last would leave a tail of idle SMs. Work of a query
// tile: the keys its last row sees; of a key tile: the query rows that see its first key.
inline std::vector<FlashTile> flash_tiles(const AttnParams& p, int rows, bool by_keys) {
  std::vector<FlashTile> tiles;
  std::vector<int64_t> work;
  for (int i = 0; i < p.nseq; i++) {
    const SeqDesc& s = p.seqs[i];
    const int64_t n = by_keys ? s.S : s.T;
    for (int64_t r0 = 0; r0 < n; r0 += rows) {
      tiles.push_back({int32_t(i), int32_t(r0)});
      if (by_keys) {
        const int64_t first = p.causal ? std::clamp<int64_t>(r0 - s.q_pos, 0, s.T) : 0;
        work.push_back(s.T - first);
      } else {
        work.push_back(p.visible(s, std::min<int64_t>(r0 + rows, s.T) - 1));
      }
    }
  }
  std::vector<int> order(tiles.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = int(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return work[a] > work[b]; });
  std::vector<FlashTile> out(tiles.size());
  for (size_t i = 0; i < order.size(); i++) out[i] = tiles[size_t(order[i])];
  return out;
}

// D += A B for 16x16 A (row-major) and 16x8 B (col-major) of bf16 (DT = kBF16) or f16, fp32
// accumulators. Not volatile: the compiler may interleave the products with the loads.
template <int DT>
__device__ __forceinline__ void mma16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (DT == kBF16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats as a pair of DT values (lo in the low half), rounded to nearest.
template <int DT>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (DT == kBF16) {
    const __nv_bfloat162 x = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&x);
  } else {
    const __half2 x = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&x);
  }
}

// The A fragment (16 rows x 16 columns) of accumulator tiles c0 (columns 0-7) and c1 (8-15):
// an m16n8 accumulator's lane layout is the A operand's, so P and dS feed the next product
// from registers.
template <int DT>
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2<DT>(c0[0], c0[1]);
  a[1] = pack2<DT>(c0[2], c0[3]);
  a[2] = pack2<DT>(c1[0], c1[1]);
  a[3] = pack2<DT>(c1[2], c1[3]);
}

// 2^x (ex2.approx: relative error ~2^-22; 2^-inf = 0).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Rows [0, ROWS) of a swizzled tile of D 16-bit elements per row: rows below `valid` by
// cp.async from src (the tile's first row; `stride` bytes between rows, 16-byte aligned), the
// others zeroed (their rows may not exist, or hold anything, NaN included, and a zero row
// keeps 0 x NaN out of the products). Every thread of the block calls it.
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(unsigned char* dst, const char* src, int64_t stride, int valid) {
  constexpr int cpr = D / 8;  // 16-byte chunks per row
  for (int e = threadIdx.x; e < ROWS * cpr; e += THREADS) {
    const int row = e / cpr, c = e % cpr;
    unsigned char* d = dst + row * (2 * D) + swizzled_chunk(row, c) * 16;
    if (row < valid) cp_async16(d, src + row * stride + c * 16);
    else *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
  }
}

// The address this lane gives ldmatrix.x4 for rows row0 .. row0+15 (row0 a multiple of 8) and
// chunks 2 cp, 2 cp + 1 of a swizzled tile, matrices in the order (rows 0-7, chunk 0),
// (rows 8-15, chunk 0), (rows 0-7, chunk 1), (rows 8-15, chunk 1). Plain: the A fragment of the
// 16 x 16 block (rows are the m index). Transposed: the B fragments (b0, b1) of the two 8-wide
// n-tiles of columns 16 cp .. 16 cp + 15 when the rows are the k index (V in P V).
template <int D>
__device__ __forceinline__ const unsigned char* frag_a(const unsigned char* tile, int row0, int cp) {
  const int l = threadIdx.x & 31;
  const int row = row0 + (l & 7) + ((l >> 3) & 1) * 8;
  return tile + row * (2 * D) + swizzled_chunk(row, 2 * cp + (l >> 4)) * 16;
}

// The address for ldmatrix.x4 (plain) that gives the B fragments of two 8-wide n-tiles whose
// n index is the row (K in Q K^T): registers 0, 1 are (b0, b1) of rows row0 .. row0+7, and
// 2, 3 of rows row0+8 .. row0+15, for the k-step of chunks 2 cp, 2 cp + 1.
template <int D>
__device__ __forceinline__ const unsigned char* frag_b(const unsigned char* tile, int row0, int cp) {
  const int l = threadIdx.x & 31;
  const int row = row0 + (l & 7) + ((l >> 4) << 3);
  return tile + row * (2 * D) + swizzled_chunk(row, 2 * cp + ((l >> 3) & 1)) * 16;
}

// One k-step of S += A B^T over the NK rows of a swizzled tile as the n index (K in Q K^T): the
// A fragment a (16 rows, chunks 2 ks and 2 ks + 1) times those chunks of the tile's rows, into
// NK / 8 m16n8 accumulators.
template <int D, int DT, int NK>
__device__ __forceinline__ void mma_rows_kstep(float (&acc)[NK / 8][4], const uint32_t (&a)[4],
                                               const unsigned char* tile, int ks) {
#pragma unroll
  for (int np = 0; np < NK / 16; np++) {
    uint32_t b[4];
    ldmatrix_x4(b, frag_b<D>(tile, np * 16, ks));
    mma16<DT>(acc[2 * np], a, b[0], b[1]);
    mma16<DT>(acc[2 * np + 1], a, b[2], b[3]);
  }
}

// Whether a flash kernel (D 64 and 128) runs on warpgroup MMAs where the GPU has them. By
// default only the backward does: on an H100 (docs/benchmarks.md) the warpgroup backward is 11%
// faster at S = 8K and the warpgroup forward 4% slower than the mma.sync kernels.
// TOPK_CUDA_FLASH_PATH=wgmma or =mma forces one kind for both.
inline bool flash_use_wgmma(int D, bool backward) {
  const char* e = std::getenv("TOPK_CUDA_FLASH_PATH");
  const std::string force = e ? e : "";
  TOPK_CHECK(force.empty() || force == "wgmma" || force == "mma", "TOPK_CUDA_FLASH_PATH=%s: expected "
             "wgmma or mma", force.c_str());
  const bool want = force.empty() ? backward : force == "wgmma";
  return want && (D == 64 || D == 128) && has_wgmma();
}

// Rows [0, ROWS) of a tile of D 16-bit elements per row as core matrices for the warpgroup MMAs
// (8 rows x 16 bytes, 128 contiguous bytes: the one of rows 8r.. and bytes 16c.. at
// (r D/8 + c) 128 bytes): rows below `valid` by cp.async from src (`stride` bytes between
// rows), the others zeroed. Eight consecutive threads copy the same 16 bytes of eight rows, one
// core matrix. The same bytes serve as a K-major operand (core matrices 128 bytes apart along
// D, 16 D apart along the rows) and an MN-major one (128 bytes apart along D, its M/N; 16 D
// along the rows, its K).
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_cm(unsigned char* dst, const char* src, int64_t stride, int valid) {
  constexpr int cpr = D / 8;
  for (int e = threadIdx.x; e < ROWS * cpr; e += THREADS) {
    const int r8 = e & 7, c = (e >> 3) % cpr, rg = (e >> 3) / cpr;
    const int row = rg * 8 + r8;
    unsigned char* d = dst + ((rg * cpr + c) * 8 + r8) * 16;
    if (row < valid) cp_async16(d, src + row * stride + c * 16);
    else *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
  }
}

// Arguments of the forward kernels (flash_forward.cu, flash_forward_wgmma.cu): query tiles of
// 128 rows.
struct FlashFwdArgs {
  const DSeq* seqs;
  const FlashTile* tiles;  // [tiles], query tiles of 128 rows
  int Hq, G;
  float sl2;  // scale * log2(e)
  bool causal;
  DRows q, k, v;  // q [B, Tq, Hq, D]; k, v [B, Smax, Hkv, D]; 16-bit, 16-byte aligned rows
  DOut dst;       // o [B, Tq, Hq, D], lse [B, Tq, Hq]
  int64_t Tq;
};

// Arguments of the backward kernels (flash_backward.cu, flash_backward_wgmma.cu).
struct FlashBwdArgs {
  const DSeq* seqs;
  const FlashTile* tiles;  // [tiles]: query tiles (dQ) or key tiles (dK/dV)
  int64_t R;               // compact query rows
  int Hq, Hkv, G;
  float sl2, scale;        // scale * log2(e), scale
  bool causal;
  DRows q, k, v, dout;     // q, dout [B, Tq, Hq, D]; k, v [B, Smax, Hkv, D]; 16-bit, aligned
  const float2* ld;        // [Hq, R]: (lse log2 e, Delta)
  float* dq;               // [B, Tq, Hq, D]
  float* dk;               // [B, Smax, Hkv, D]
  float* dv;               // [B, Smax, Hkv, D]
  int64_t Tq, Smax;
};

// A query tile of the forward and dQ kernels (a block per (tile of `per` query rows, query
// head): blockIdx.x = tile Hq + h): its sequence, first row and row count, the keys its first
// and last rows see (tiles below n_lo need no mask, none past n_hi is read), and the first K
// and V rows of its KV head.
struct FlashQTile {
  DSeq s;
  int h, t0, rows;
  int64_t n_lo, n_hi;
  const char* k;
  const char* v;
};
__device__ __forceinline__ FlashQTile flash_q_tile(const FlashTile* tiles, const DSeq* seqs, int Hq,
                                                   int G, bool causal, const DRows& k, const DRows& v,
                                                   int per) {
  const FlashTile tile = tiles[blockIdx.x / Hq];
  FlashQTile t;
  t.h = int(blockIdx.x % Hq);
  t.s = seqs[tile.seq];
  t.t0 = tile.r0;
  t.rows = min(per, t.s.T - t.t0);
  t.n_lo = visible_keys(t.s, t.t0, causal);
  t.n_hi = visible_keys(t.s, t.t0 + t.rows - 1, causal);
  const int kvh = t.h / G;
  t.k = k.data + k.offset(t.s.batch, t.s.k_start, kvh) * 2;
  t.v = v.data + v.offset(t.s.batch, t.s.k_start, kvh) * 2;
  return t;
}

// Rows [0, ROWS) of a tile, swizzled for ldmatrix (load_tile) or core matrices for the
// warpgroup MMAs (CM: load_tile_cm).
template <int D, int ROWS, int THREADS, bool CM>
__device__ __forceinline__ void load_rows(unsigned char* dst, const char* src, int64_t stride, int valid) {
  if constexpr (CM) load_tile_cm<D, ROWS, THREADS>(dst, src, stride, valid);
  else load_tile<D, ROWS, THREADS>(dst, src, stride, valid);
}

// Key tile i of a query tile (KEYS keys; rows past n_hi zeroed): K at dst, V after it.
template <int D, int KEYS, int THREADS, bool CM>
__device__ __forceinline__ void flash_load_kv(unsigned char* dst, const FlashQTile& qt, const DRows& k,
                                              const DRows& v, int i) {
  const int64_t j0 = int64_t(i) * KEYS;
  const int valid = int(min(int64_t(KEYS), qt.n_hi - j0));
  load_rows<D, KEYS, THREADS, CM>(dst, qt.k + j0 * k.st * 2, k.st * 2, valid);
  load_rows<D, KEYS, THREADS, CM>(dst + KEYS * 2 * D, qt.v + j0 * v.st * 2, v.st * 2, valid);
}

// One key tile of the forward's online softmax, for the lane's rows g and g + 8 of its warp's
// 16 (the four lanes of a row hold its NB * 8 scores, m16n8 accumulator layout, keys from j0):
// with mask, keys past a row's visible ones (nv0, nv1) are masked; the running max (m0, m1, in
// the log2 domain: sl2 = scale log2 e) and the lane's part of the running sum (l0, l1) are
// updated, the scores become weights, and the rows' O accumulators are rescaled.
template <int NB, int ND>
__device__ __forceinline__ void flash_softmax_tile(float (&sc)[NB][4], float (&o)[ND][4], float sl2,
                                                   bool mask, int64_t j0, int64_t nv0, int64_t nv1,
                                                   float& m0, float& m1, float& l0, float& l1) {
  const int c2 = (threadIdx.x & 3) * 2;
  if (mask) {
#pragma unroll
    for (int n = 0; n < NB; n++)
#pragma unroll
      for (int e = 0; e < 4; e++)
        if (j0 + 8 * n + c2 + (e & 1) >= (e < 2 ? nv0 : nv1)) sc[n][e] = -INFINITY;
  }
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int n = 0; n < NB; n++) {
    mx0 = fmaxf(mx0, fmaxf(sc[n][0], sc[n][1]));
    mx1 = fmaxf(mx1, fmaxf(sc[n][2], sc[n][3]));
  }
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
  }
  const float mn0 = fmaxf(m0, mx0 * sl2), mn1 = fmaxf(m1, mx1 * sl2);
  // A row that has seen no key yet keeps max -inf; subtracting 0 then keeps every term 0.
  const float mu0 = mn0 == -INFINITY ? 0.f : mn0, mu1 = mn1 == -INFINITY ? 0.f : mn1;
  const float al0 = ex2(m0 - mu0), al1 = ex2(m1 - mu1);
  m0 = mn0;
  m1 = mn1;
  float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
  for (int n = 0; n < NB; n++) {
    sc[n][0] = ex2(fmaf(sc[n][0], sl2, -mu0));
    sc[n][1] = ex2(fmaf(sc[n][1], sl2, -mu0));
    sc[n][2] = ex2(fmaf(sc[n][2], sl2, -mu1));
    sc[n][3] = ex2(fmaf(sc[n][3], sl2, -mu1));
    rs0 += sc[n][0] + sc[n][1];
    rs1 += sc[n][2] + sc[n][3];
  }
  l0 = l0 * al0 + rs0;
  l1 = l1 * al1 + rs1;
#pragma unroll
  for (int d = 0; d < ND; d++) {
    o[d][0] *= al0;
    o[d][1] *= al0;
    o[d][2] *= al1;
    o[d][3] *= al1;
  }
}

// The forward's output rows: o = O / l and lse = m ln 2 + ln l for the lane's rows tr and
// tr + 8 below t_end (l summed over the row's four lanes first; l = 0 means the row saw no key:
// o = 0, lse = +inf).
template <int D>
__device__ __forceinline__ void flash_store_o(const DOut& dst, const DSeq& s, int h, int Hq, int64_t Tq,
                                              int tr, int t_end, const float (&o)[D / 8][4],
                                              float l0, float l1, float m0, float m1) {
  const int c2 = (threadIdx.x & 3) * 2;
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int t = tr + 8 * half;
    if (t >= t_end) continue;
    const float l = half ? l1 : l0, m = half ? m1 : m0;
    const bool empty = !(l > 0.f);
    const float inv = empty ? 0.f : 1.f / l;
    const int64_t off = dst.offset(s.batch, s.q_start + t, h);
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      store1(dst.o, dst.dt, off + 8 * d + c2, o[d][2 * half] * inv);
      store1(dst.o, dst.dt, off + 8 * d + c2 + 1, o[d][2 * half + 1] * inv);
    }
    if ((threadIdx.x & 3) == 0)
      dst.lse[(int64_t(s.batch) * Tq + s.q_start + t) * Hq + h] =
          empty ? INFINITY : m * 0.69314718055994531f + logf(l);
  }
}

// dS = P (dP - Delta) of a key tile of the dQ kernels, in place of dp: P = 2^(S sl2 - lse log2 e)
// from sc, with ld0, ld1 the (lse log2 e, Delta) pairs of the lane's rows g and g + 8, and with
// mask the keys past a row's visible ones weighing 0.
template <int NB>
__device__ __forceinline__ void flash_ds_tile(const float (&sc)[NB][4], float (&dp)[NB][4], float sl2,
                                              float2 ld0, float2 ld1, bool mask, int64_t j0,
                                              int64_t nv0, int64_t nv1) {
  const int c2 = (threadIdx.x & 3) * 2;
#pragma unroll
  for (int n = 0; n < NB; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const float2 x = e < 2 ? ld0 : ld1;
      float pv = ex2(fmaf(sc[n][e], sl2, -x.x));
      if (mask && j0 + 8 * n + c2 + (e & 1) >= (e < 2 ? nv0 : nv1)) pv = 0.f;
      dp[n][e] = pv * (dp[n][e] - x.y);
    }
}

// dQ rows tr and tr + 8 below t_end (scale times the accumulated dS K).
template <int D>
__device__ __forceinline__ void flash_store_dq(float* dq, const DSeq& s, int h, int Hq, int64_t Tq,
                                               int tr, int t_end, const float (&acc)[D / 8][4],
                                               float scale) {
  const int c2 = (threadIdx.x & 3) * 2;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int t = tr + 8 * half;
    if (t >= t_end) continue;
    float* out = dq + ((int64_t(s.batch) * Tq + s.q_start + t) * Hq + h) * D;
#pragma unroll
    for (int d = 0; d < D / 8; d++)
      *reinterpret_cast<float2*>(out + 8 * d + c2) =
          make_float2(acc[d][2 * half] * scale, acc[d][2 * half + 1] * scale);
  }
}

// A key tile of the dK/dV kernels (a block per (tile of `per` keys, KV head): blockIdx.x =
// tile Hkv + kvh): its sequence, first key and key count, and its items, the (head of the
// group, tile of `rows` queries) pairs that see it, head-major: queries from tfirst on see key
// j0 (causal: q_pos + t + 1 > j0), every later key of the tile a subset of them.
struct FlashKTile {
  DSeq s;
  int kvh, nk, nqt, nitems;
  int64_t j0, tfirst;
};
__device__ __forceinline__ FlashKTile flash_k_tile(const FlashBwdArgs& a, int per, int rows) {
  const FlashTile tile = a.tiles[blockIdx.x / a.Hkv];
  FlashKTile k;
  k.kvh = int(blockIdx.x % a.Hkv);
  k.s = a.seqs[tile.seq];
  k.j0 = tile.r0;
  k.nk = int(min(int64_t(per), int64_t(k.s.S) - k.j0));
  k.tfirst = a.causal ? min(max(k.j0 - int64_t(k.s.q_pos), int64_t(0)), int64_t(k.s.T)) : 0;
  k.nqt = int((k.s.T - k.tfirst + rows - 1) / rows);
  k.nitems = a.G * k.nqt;
  return k;
}

// Item it of a key tile: its query head, first query row and row count (of `rows`).
struct FlashItem {
  int hh, qr;
  int64_t tq0;
};
__device__ __forceinline__ FlashItem flash_item(const FlashKTile& k, int G, int it, int rows) {
  FlashItem q;
  q.hh = k.kvh * G + it / k.nqt;
  q.tq0 = k.tfirst + int64_t(it % k.nqt) * rows;
  q.qr = int(min(int64_t(rows), int64_t(k.s.T) - q.tq0));
  return q;
}

// The item's (lse log2 e, Delta) pairs into ld[0, rows) by cp.async, by the block's THREADS
// threads; rows past T get (+inf, 0), so that they weigh 0.
template <int THREADS>
__device__ __forceinline__ void flash_item_ld(const FlashBwdArgs& a, const FlashKTile& k, const FlashItem& q,
                                              float2* ld, int rows) {
  for (int c = threadIdx.x; c < rows; c += THREADS) {
    if (c < q.qr) cp_async8(&ld[c], &a.ld[int64_t(q.hh) * a.R + k.s.r0 + q.tq0 + c]);
    else ld[c] = make_float2(INFINITY, 0.f);
  }
}

// A key tile's K and V rows (KEYS) into sk and sv, and item it's Q and dout rows (ROWS) into
// tq and tq + ROWS 2 D with its pairs into ld: swizzled (CM false) or core matrices.
template <int D, int KEYS, int THREADS, bool CM>
__device__ __forceinline__ void flash_load_k_tile(const FlashBwdArgs& a, const FlashKTile& k,
                                                  unsigned char* sk, unsigned char* sv) {
  load_rows<D, KEYS, THREADS, CM>(sk, a.k.data + a.k.offset(k.s.batch, k.s.k_start + k.j0, k.kvh) * 2,
                                  a.k.st * 2, k.nk);
  load_rows<D, KEYS, THREADS, CM>(sv, a.v.data + a.v.offset(k.s.batch, k.s.k_start + k.j0, k.kvh) * 2,
                                  a.v.st * 2, k.nk);
}
template <int D, int ROWS, int THREADS, bool CM>
__device__ __forceinline__ void flash_load_item(const FlashBwdArgs& a, const FlashKTile& k, int it,
                                                unsigned char* tq, float2* ld) {
  const FlashItem q = flash_item(k, a.G, it, ROWS);
  const DSeq& s = k.s;
  load_rows<D, ROWS, THREADS, CM>(tq, a.q.data + a.q.offset(s.batch, s.q_start + q.tq0, q.hh) * 2,
                                  a.q.st * 2, q.qr);
  load_rows<D, ROWS, THREADS, CM>(tq + ROWS * 2 * D,
                                  a.dout.data + a.dout.offset(s.batch, s.q_start + q.tq0, q.hh) * 2,
                                  a.dout.st * 2, q.qr);
  flash_item_ld<THREADS>(a, k, q, ld, ROWS);
}

// Whether the causal diagonal crosses the item's tile (its first query does not see the key
// tile's last key), and then the columns col <= lim_a and col <= lim_b of the item's `rows`
// queries (clamped to the tile) that do not see the lane's keys ja and ja + 8: query t sees
// key j < S iff t > j - q_pos - 1.
__device__ __forceinline__ bool flash_item_mask(bool causal, const FlashKTile& k, const FlashItem& q,
                                                int64_t ja, int rows, int& lim_a, int& lim_b) {
  const int64_t rel = ja - int64_t(k.s.q_pos) - 1 - q.tq0;
  lim_a = int(min(max(rel, int64_t(-1)), int64_t(rows)));
  lim_b = int(min(max(rel + 8, int64_t(-1)), int64_t(rows)));
  return causal && visible_keys(k.s, q.tq0, true) < k.j0 + k.nk;
}

// P^T and dS^T = P^T (dP^T - Delta) of a 32-query step of the dK/dV kernels, in place of sc and
// dp (keys ja and ja + 8 of the lane, queries qb + 8 n + ...): ld the stage's (lse log2 e,
// Delta) pairs; with mask, the queries at columns up to lim_a (lim_b) do not see key ja (ja + 8).
__device__ __forceinline__ void flash_pds_t_step(float (&sc)[4][4], float (&dp)[4][4], const float2* ld,
                                                 int qb, float sl2, bool mask, int lim_a, int lim_b) {
  const int c2 = (threadIdx.x & 3) * 2;
#pragma unroll
  for (int n = 0; n < 4; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int col = qb + 8 * n + c2 + (e & 1);
      const float2 x = ld[col];
      float pv = ex2(fmaf(sc[n][e], sl2, -x.x));  // 0 for rows past T (lse = +inf)
      if (mask && col <= (e < 2 ? lim_a : lim_b)) pv = 0.f;
      sc[n][e] = pv;
      dp[n][e] = pv * (dp[n][e] - x.y);
    }
}

// dK (times scale) and dV rows ja and ja + 8 of the dK/dV kernels, those below j_end.
template <int D>
__device__ __forceinline__ void flash_store_dkdv(const FlashBwdArgs& a, const DSeq& s, int kvh, int64_t ja,
                                                 int64_t j_end, const float (&dk)[D / 8][4],
                                                 const float (&dv)[D / 8][4]) {
  const int c2 = (threadIdx.x & 3) * 2;
#pragma unroll
  for (int half = 0; half < 2; half++) {
    const int64_t j = ja + 8 * half;
    if (j >= j_end) continue;
    const int64_t off = ((int64_t(s.batch) * a.Smax + s.k_start + j) * a.Hkv + kvh) * D;
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
      *reinterpret_cast<float2*>(a.dk + off + 8 * d + c2) =
          make_float2(dk[d][2 * half] * a.scale, dk[d][2 * half + 1] * a.scale);
      *reinterpret_cast<float2*>(a.dv + off + 8 * d + c2) = make_float2(dv[d][2 * half], dv[d][2 * half + 1]);
    }
  }
}

// The forward on warpgroup MMAs (flash_forward_wgmma.cu), D 64 or 128.
template <int D, int DT>
void launch_flash_forward_wgmma(const FlashFwdArgs& a, int64_t blocks);

// The backward's kernels on warpgroup MMAs (flash_backward_wgmma.cu), D 64 or 128: dQ over
// query tiles of 128 rows, dK/dV over key tiles of 128 keys (a.tiles set for each).
template <int D, int DT>
void launch_flash_dq_wgmma(const FlashBwdArgs& a, int64_t qblocks);
template <int D, int DT>
void launch_flash_dkdv_wgmma(const FlashBwdArgs& a, int64_t kblocks);

}  // namespace topk::cuda
