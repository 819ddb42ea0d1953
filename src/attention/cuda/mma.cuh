// Tensor cores in the CUDA attention kernels: ldmatrix and bf16 mma, q split into exact bf16
// parts, swizzled key tiles, and the score slab of 16 keys.
#pragma once
#include "attention/cuda/common.cuh"

namespace topk::cuda {

// Tensor cores: four 8x8 b16 matrices from shared memory (lane l gives the address of row
// l % 8 of matrix l / 8), and D += A B for a 16x16 bf16 A (row-major) and 16x8 B (col-major).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
// The same four matrices transposed: lane l gives row l % 8 of matrix l / 8 as stored, and
// receives the fragment of its transpose (B-style data used as an A operand).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// D += A B with f16 A and B (the FP8 indexer keys, exactly as f16).
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}


// Splits x into parts bf16 values whose sum is x to 8 * parts significant bits (exact for
// bf16 x with 1 part, f16 with 2, f32 with 3): tensor-core products of bf16 K with each part
// are exact, so the dot product keeps the precision of q.
__device__ __forceinline__ void split_bf16(float x, int parts, uint16_t (&out)[3]) {
#pragma unroll
  for (int i = 0; i < 3; i++) {
    const __nv_bfloat16 h = __float2bfloat16_rn(i < parts ? x : 0.f);
    out[i] = __bfloat16_as_ushort(h);
    x -= __bfloat162float(h);
  }
}

// q of one query row as the B fragments (dims x 8 head columns) of D / 16 mma k-steps, one
// set per bf16 part: lane l holds head h0 + l / 4 (zero past nh), dims 16 ks + 2 (l % 4) +
// {0, 1} and the same + 8. qo0: the element offset of the row's head h0.
template <int D>
__device__ __forceinline__ void load_q_frags(const DRows& q, int64_t qo0, int nh, int parts,
                                             uint32_t (&qb)[3][D / 16][2]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t2 = (lane & 3) * 2;
  const int64_t qo = qo0 + (g < nh ? g : 0) * q.sh;
  // Every load of the lane first, under one dtype branch: a load per element next to its
  // split made each wait for the one before (a chain of global latencies per call).
  float x[D / 16][4];
  auto gather = [&](auto conv) {
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++)
#pragma unroll
      for (int e = 0; e < 4; e++) x[ks][e] = conv(qo + 16 * ks + t2 + 8 * (e >> 1) + (e & 1));
  };
  if (q.dt == kBF16) {
    const __nv_bfloat16* p = reinterpret_cast<const __nv_bfloat16*>(q.data);
    gather([&](int64_t i) { return __bfloat162float(p[i]); });
  } else if (q.dt == kF16) {
    const __half* p = reinterpret_cast<const __half*>(q.data);
    gather([&](int64_t i) { return __half2float(p[i]); });
  } else {
    const float* p = reinterpret_cast<const float*>(q.data);
    gather([&](int64_t i) { return p[i]; });
  }
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
#pragma unroll
    for (int j = 0; j < 2; j++) {
      uint16_t lo[3], hi[3];
      split_bf16(g < nh ? x[ks][2 * j] : 0.f, parts, lo);
      split_bf16(g < nh ? x[ks][2 * j + 1] : 0.f, parts, hi);
#pragma unroll
      for (int p = 0; p < 3; p++) qb[p][ks][j] = uint32_t(lo[p]) | (uint32_t(hi[p]) << 16);
    }
  }
}

// Tensor-core tiles keep bf16 rows of D elements unpadded in shared memory, with 16-byte chunk
// c of row r stored at chunk c ^ (r % 8): ldmatrix over 8 consecutive rows then hits 8
// different bank groups. (Padding each row by 16 bytes does the same for ldmatrix, but it
// splits cp.async's writes of a 128-byte line over two shared-memory segments, and the H100
// then requests every line from L2 one and a half times: 5% of the read bandwidth.)
__device__ __forceinline__ int swizzled_chunk(int row, int chunk) { return chunk ^ (row & 7); }

// Dot products of 16 bf16 key rows (a swizzled tile, rows 2 D bytes apart, starting at a row
// that is a multiple of 8) with the 8 head columns of qb: c = C[key][head] fragments, lane l
// holding keys l / 4 and l / 4 + 8, heads 2 (l % 4) and + 1.
template <int D>
__device__ __forceinline__ void slab_scores(const unsigned char* rows,
                                            const uint32_t (&qb)[3][D / 16][2], int parts,
                                            float (&c)[4]) {
  const int lane = threadIdx.x & 31;
  const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
  const unsigned char* arow = rows + row * (2 * D);
#pragma unroll
  for (int e = 0; e < 4; e++) c[e] = 0.f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    uint32_t af[4];
    ldmatrix_x4(af, arow + swizzled_chunk(row, 2 * ks + (lane >> 4)) * 16);
#pragma unroll
    for (int p = 0; p < 3; p++)
      if (p < parts) mma_bf16(c, af, qb[p][ks][0], qb[p][ks][1]);
  }
}

// The same for HG groups of 8 heads at once (one bf16 part): each k-step's A fragment is loaded
// once for every group, not once per group, so a 16-key slab costs D / 16 ldmatrix instead of
// HG times that (shared memory bandwidth bounded the indexer at HI = 64). Each c[g] sums the
// k-steps in the same order as slab_scores: the same bits.
template <int D, int HG>
__device__ __forceinline__ void slab_scores_heads(const unsigned char* rows,
                                                  const uint32_t (&qb)[HG][D / 16][2],
                                                  float (&c)[HG][4]) {
  const int lane = threadIdx.x & 31;
  const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
  const unsigned char* arow = rows + row * (2 * D);
#pragma unroll
  for (int g = 0; g < HG; g++)
#pragma unroll
    for (int e = 0; e < 4; e++) c[g][e] = 0.f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    uint32_t af[4];
    ldmatrix_x4(af, arow + swizzled_chunk(row, 2 * ks + (lane >> 4)) * 16);
#pragma unroll
    for (int g = 0; g < HG; g++) mma_bf16(c[g], af, qb[g][ks][0], qb[g][ks][1]);
  }
}

}  // namespace topk::cuda
