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


// Warpgroup MMA (sm_90a machine code only: TOPK_WGMMA is defined where the instructions exist).
// D [64 x N] (+)= A B for a 64x16 A in registers (each warp of the group holds 16 rows in the
// m16n8k16 A layout) and a 16xN B in shared memory named by a descriptor; f32 accumulators,
// each warp's 16 rows in the m16n8 layout repeated over the N/8 column groups: d[4i + {0, 1}]
// at row g, columns 8i + 2t + {0, 1}, d[4i + {2, 3}] at row g + 8.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TOPK_WGMMA 1

// Descriptor of an operand in shared memory without swizzle: core matrices of 8 rows x 16 bytes,
// each stored as 128 contiguous bytes, lbo bytes apart along K and sbo bytes apart along M/N.
// K-major (rows along M/N, 16 bytes of K in a row) or MN-major (rows along K, 16 bytes of M/N).
__device__ __forceinline__ uint64_t wgmma_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return uint64_t((s & 0x3ffff) >> 4) | (uint64_t((lbo & 0x3ffff) >> 4) << 16) |
         (uint64_t((sbo & 0x3ffff) >> 4) << 32);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
// Keeps the compiler from moving accumulator reads and writes across the asynchronous MMA.
template <int N>
__device__ __forceinline__ void wgmma_hold(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
// Generic-proxy stores to shared memory made visible to the MMA's reads of B.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// accumulate = 0 overwrites d. BF16: bf16 A and B, else f16. TB: B is MN-major (N contiguous,
// the "transposed" B), else K-major.
template <bool BF16, bool TB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  if constexpr (BF16)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(int(TB)));
  else
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(int(TB)));
}
template <bool BF16, bool TB>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  if constexpr (BF16)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(int(TB)));
  else
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(int(TB)));
}
// The same with A in shared memory too (K-major, descriptor a), B K-major.
template <bool BF16>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], uint64_t a, uint64_t b, int accumulate) {
  if constexpr (BF16)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b), "r"(accumulate));
  else
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b), "r"(accumulate));
}
template <bool BF16>
__device__ __forceinline__ void wgmma_m64n32k16_ss(float (&d)[16], uint64_t a, uint64_t b, int accumulate) {
  if constexpr (BF16)
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
        "%16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(a), "l"(b), "r"(accumulate));
  else
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
        "%16, %17, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(a), "l"(b), "r"(accumulate));
}
#endif

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
