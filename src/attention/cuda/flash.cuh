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

// Whether the flash kernels (D 64 and 128) run on warpgroup MMAs: where the GPU has them,
// unless TOPK_CUDA_FLASH_PATH=mma forces the mma.sync kernels.
inline bool flash_use_wgmma(int D) {
  const char* e = std::getenv("TOPK_CUDA_FLASH_PATH");
  const std::string force = e ? e : "";
  TOPK_CHECK(force.empty() || force == "wgmma" || force == "mma", "TOPK_CUDA_FLASH_PATH=%s: expected "
             "wgmma or mma", force.c_str());
  return force != "mma" && (D == 64 || D == 128) && has_wgmma();
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

// The backward's kernels on warpgroup MMAs (flash_backward_wgmma.cu), D 64 or 128: dQ over
// query tiles of 128 rows, dK/dV over key tiles of 128 keys (a.tiles set for each).
template <int D, int DT>
void launch_flash_dq_wgmma(const FlashBwdArgs& a, int64_t qblocks);
template <int D, int DT>
void launch_flash_dkdv_wgmma(const FlashBwdArgs& a, int64_t kblocks);

}  // namespace topk::cuda
