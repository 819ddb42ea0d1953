// Score rows of top-k prefill as matrix products on tensor cores (cuBLAS): for the rows of one
// sequence in a chunk and one KV head, scores = scale * Q K^T with Q the rows of the group's G
// query heads (a strided batch of G) and K the sequence's keys up to the most any of the rows
// sees. Each K tile is then read once for many query rows instead of once per row, which is
// what made a per-row score pass cost ~T x S x D of traffic in prefill.
//
// Output: compact score rows [r1-r0, Hq, Smax], as launch_scores writes them, scale * q.k in
// f32 (bf16 or f16 products are exact in f32; only the order of the f32 sums differs from the
// score kernel's). Keys a row does not see (past its causal limit) get the product too, and
// keys past the chunk's longest row nothing: every reader of stored rows reads only each
// row's visible keys, so neither is ever read.
#include <cstdint>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"
#include "core/cuda/cublas.cuh"

namespace topk::cuda {

namespace {

constexpr int64_t kIntMax = (int64_t(1) << 31) - 1;

}  // namespace

bool score_gemm_fits(const AttnParams& p) {
  const bool same16 = p.q.dtype == p.k.dtype && (p.q.dtype == DType::bf16 || p.q.dtype == DType::f16);
  // cuBLAS takes leading dims as int and needs them at least D (k x m and k x n operands);
  // the score rows' pitch may be Smax rounded up to 4 keys (topk/pipeline.cu).
  return same16 && p.q.st >= p.D && p.k.st >= p.D && p.q.st <= kIntMax && p.k.st <= kIntMax &&
         int64_t(p.Hq) * (p.Smax + 4) <= kIntMax;
}

void launch_score_gemm(const AttnParams& p, int64_t r0, int64_t r1, float* out) {
  TOPK_CHECK(score_gemm_fits(p), "topk_attention_forward: the score products need 16-bit q and k of one dtype");
  const cudaDataType_t dt = p.q.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_16F;
  const size_t esize = 2;
  const int G = p.group();
  const float alpha = p.scale, beta = 0.f;  // beta = 0: cuBLAS never reads out
  cublasHandle_t h = cublas_handle();
  const char* qd = static_cast<const char*>(p.q.data);
  const char* kd = static_cast<const char*>(p.k.data);
  int64_t base = 0;  // compact row of sequence i's first query
  for (int i = 0; i < p.nseq && base < r1; base += p.seqs[i].T, i++) {
    const SeqDesc& s = p.seqs[i];
    const int64_t a = base > r0 ? base : r0, b = base + s.T < r1 ? base + s.T : r1;
    if (a >= b) continue;
    const int64_t t0 = a - base, t1 = b - base;
    // Visible keys grow with the row: the last row sees the most.
    const int64_t n = p.visible(s, t1 - 1);
    if (n <= 0) continue;
    for (int kvh = 0; kvh < p.Hkv; kvh++) {
      // Column-major: C (n keys x rows, ldc = Hq Smax) = K^T (K stored D x n, ld st) times
      // Q (D x rows, ld st); batch g steps one query head in Q and one score row in C.
      const char* kp = kd + (int64_t(s.batch) * p.k.sb + int64_t(s.k_start) * p.k.st + int64_t(kvh) * p.k.sh) * esize;
      const char* qp = qd + (int64_t(s.batch) * p.q.sb + (int64_t(s.q_start) + t0) * p.q.st +
                             int64_t(kvh) * G * p.q.sh) * esize;
      float* cp = out + ((a - r0) * p.Hq + int64_t(kvh) * G) * p.Smax;
      // Keys in a multiple of 8, then the rest: with an odd key count cuBLAS (13.0, H200) falls
      // back to unaligned pre-Hopper kernels at a tenth of the tensor-core rate.
      const int64_t n8 = n / 8 * 8;
      for (int part = 0; part < 2; part++) {
        const int64_t j0 = part == 0 ? 0 : n8, nj = part == 0 ? n8 : n - n8;
        if (nj <= 0) continue;
        TOPK_CUBLAS(cublasGemmStridedBatchedEx(
            h, CUBLAS_OP_T, CUBLAS_OP_N, int(nj), int(t1 - t0), p.D, &alpha, kp + j0 * p.k.st * esize,
            dt, int(p.k.st), 0, qp, dt, int(p.q.st), p.q.sh, &beta, cp + j0, CUDA_R_32F,
            int(int64_t(p.Hq) * p.Smax), p.Smax, G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      }
    }
  }
}

}  // namespace topk::cuda
