// Quest page bounds, quantised-key scores and score masking on CUDA (approx.h). Plain fp32 FMA
// kernels: these selectors are measured for their fidelity, and each output is written by one
// thread or warp after a fixed-order sum (deterministic).
//   quest      a block per (query row, KV head), a warp per page: each lane keeps the min and
//              max of its dims over the page's visible keys, then each query head of the group
//              sums max(q lo, q hi) over the dims (lanes, then a fixed butterfly).
//   quantized  a block per (query row, 256 keys), a warp per key and KV head: the row's max
//              |k| (butterfly max), the rounded elements with the host's fp32 operations, and
//              the dot with each query head of the group.
//   mask       the listed values saved, the rows cleared to -inf, the saved values put back.
#include <algorithm>

#include "attention/approx.h"
#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"

namespace topk::cuda {

namespace {

constexpr int kWarps = 8;
constexpr int kMaxLaneDims = 8;  // D <= 256

struct ApproxArgs {
  const DSeq* seqs;
  int nseq;
  int Hq, Hkv, G, D, page, bits;
  int64_t Tq, Smax, P, nchunks;
  float scale;
  bool causal;
  DRows q, k;
  float* out;
};

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

__global__ void __launch_bounds__(kWarps * 32) quest_kernel(const ApproxArgs a) {
  extern __shared__ float qs[];  // the group's queries [G][D]
  const int64_t r = blockIdx.x / a.Hkv;
  const int g = int(blockIdx.x % a.Hkv);
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, r, a.Tq, a.causal);
  const int64_t np = (n + a.page - 1) / a.page;
  for (int i = threadIdx.x; i < a.G * a.D; i += blockDim.x)
    qs[i] = load1(a.q.data, a.q.dt, a.q.offset(s.batch, s.q_start + t, g * a.G + i / a.D) + i % a.D);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t pg = warp; pg < a.P; pg += kWarps) {
    float* col = a.out + (qrow * a.Hq + int64_t(g) * a.G) * a.P + pg;
    if (pg >= np) {
      if (lane < a.G)
        for (int h = lane; h < a.G; h += 32) col[int64_t(h) * a.P] = -INFINITY;
      continue;
    }
    float lo[kMaxLaneDims], hi[kMaxLaneDims];
#pragma unroll
    for (int i = 0; i < kMaxLaneDims; i++) lo[i] = INFINITY, hi[i] = -INFINITY;
    const int64_t j1 = std::min<int64_t>(n, (pg + 1) * a.page);
    for (int64_t j = pg * a.page; j < j1; j++) {
      const int64_t off = a.k.offset(s.batch, s.k_start + j, g);
#pragma unroll
      for (int i = 0; i < kMaxLaneDims; i++) {
        const int d = lane + 32 * i;
        if (d < a.D) {
          const float x = load1(a.k.data, a.k.dt, off + d);
          lo[i] = fminf(lo[i], x);
          hi[i] = fmaxf(hi[i], x);
        }
      }
    }
    for (int h = 0; h < a.G; h++) {
      float u = 0.f;
#pragma unroll
      for (int i = 0; i < kMaxLaneDims; i++) {
        const int d = lane + 32 * i;
        if (d < a.D) {
          const float q = qs[h * a.D + d];
          u += fmaxf(q * lo[i], q * hi[i]);
        }
      }
      u = warp_sum(u);
      if (lane == 0) col[int64_t(h) * a.P] = a.scale * u;
    }
  }
}

__global__ void __launch_bounds__(kWarps * 32) quant_kernel(const ApproxArgs a) {
  extern __shared__ float qs[];  // the row's queries [Hq][D]
  constexpr int kKeys = 256;
  const int64_t r = blockIdx.x / a.nchunks, j0 = (blockIdx.x % a.nchunks) * kKeys;
  const int64_t j1 = std::min<int64_t>(j0 + kKeys, a.Smax);
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, r, a.Tq, a.causal);
  float* out = a.out + qrow * a.Hq * a.Smax;
  for (int i = threadIdx.x; i < a.Hq * a.D; i += blockDim.x)
    qs[i] = load1(a.q.data, a.q.dt, a.q.offset(s.batch, s.q_start + t, i / a.D) + i % a.D);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const float L = a.bits == 8 ? 127.0f : 7.0f;
  for (int64_t item = warp; item < (j1 - j0) * a.Hkv; item += kWarps) {
    const int64_t j = j0 + item / a.Hkv;
    const int g = int(item % a.Hkv);
    if (j >= n) {
      for (int h = lane; h < a.G; h += 32) out[int64_t(g * a.G + h) * a.Smax + j] = -INFINITY;
      continue;
    }
    const int64_t off = a.k.offset(s.batch, s.k_start + j, g);
    float x[kMaxLaneDims], amax = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxLaneDims; i++) {
      const int d = lane + 32 * i;
      x[i] = d < a.D ? load1(a.k.data, a.k.dt, off + d) : 0.f;
      amax = fmaxf(amax, fabsf(x[i]));
    }
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    // The host's quant_step and quant_value (approx.h), operation for operation.
    const float step = __fdiv_rn(amax, L);
#pragma unroll
    for (int i = 0; i < kMaxLaneDims; i++) x[i] = step > 0.f ? __fmul_rn(step, roundf(__fdiv_rn(x[i], step))) : 0.f;
    for (int h = 0; h < a.G; h++) {
      float d = 0.f;
#pragma unroll
      for (int i = 0; i < kMaxLaneDims; i++) {
        const int e = lane + 32 * i;
        if (e < a.D) d = fmaf(qs[(g * a.G + h) * a.D + e], x[i], d);
      }
      d = warp_sum(d);
      if (lane == 0) out[int64_t(g * a.G + h) * a.Smax + j] = a.scale * d;
    }
  }
  // The never-visible tail of the chunk's columns is covered above (j >= n); columns past Smax
  // do not exist.
}

__global__ void mask_save(MaskParams m, float* saved) {
  const int64_t n = m.R * m.H * m.C, G = m.H / m.Hsel;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t rh = i / m.C, c = i % m.C, r = rh / m.H, h = rh % m.H;
    const int32_t j = m.idx[(r * m.Hsel + h / G) * m.C + c];
    saved[i] = j >= 0 && j < m.S ? m.scores[rh * m.S + j] : 0.f;
  }
}
__global__ void mask_clear(MaskParams m) {
  const int64_t n = m.R * m.H * m.S;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    m.scores[i] = -INFINITY;
}
__global__ void mask_restore(MaskParams m, const float* saved) {
  const int64_t n = m.R * m.H * m.C, G = m.H / m.Hsel;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t rh = i / m.C, c = i % m.C, r = rh / m.H, h = rh % m.H;
    const int32_t j = m.idx[(r * m.Hsel + h / G) * m.C + c];
    if (j >= 0 && j < m.S) m.scores[rh * m.S + j] = saved[i];  // duplicates write equal values
  }
}

unsigned grid_of(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 8192)); }

ApproxArgs approx_args(const AttnParams& p, const SeqTable& st) {
  ApproxArgs a{};
  a.seqs = st.d;
  a.nseq = st.n;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  a.D = p.D;
  a.Tq = p.Tq;
  a.Smax = p.Smax;
  a.scale = p.scale;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  return a;
}

void check_dims(const char* op, const AttnParams& p, size_t smem) {
  TOPK_CHECK(p.D <= 32 * kMaxLaneDims, "%s: head dim %d on CUDA (up to %d is built)", op, p.D,
             32 * kMaxLaneDims);
  TOPK_CHECK(smem <= kDefaultBlockSmem, "%s: %d query heads of dim %d do not fit the kernel's shared "
             "memory on CUDA", op, p.Hq, p.D);
}

}  // namespace

void quest_scores(const QuestParams& qp) {
  const AttnParams& p = qp.a;
  const size_t smem = size_t(p.group()) * p.D * 4;
  check_dims("quest_scores", p, smem);
  SeqTable st = upload_seqs(p);
  if (st.rows == 0) return;
  ApproxArgs a = approx_args(p, st);
  a.page = qp.page;
  a.P = qp.P;
  a.out = qp.scores;
  const int64_t grid = st.rows * p.Hkv;
  TOPK_CHECK(grid < (int64_t(1) << 31), "quest_scores: too many blocks for one launch");
  quest_kernel<<<unsigned(grid), kWarps * 32, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

void quantized_scores(const QuantParams& qp) {
  const AttnParams& p = qp.a;
  const size_t smem = size_t(p.Hq) * p.D * 4;
  check_dims("quantized_scores", p, smem);
  SeqTable st = upload_seqs(p);
  if (st.rows == 0 || p.Smax == 0) return;
  ApproxArgs a = approx_args(p, st);
  a.bits = qp.bits;
  a.out = qp.scores;
  a.nchunks = (p.Smax + 255) / 256;
  const int64_t grid = st.rows * a.nchunks;
  TOPK_CHECK(grid < (int64_t(1) << 31), "quantized_scores: too many blocks for one launch");
  quant_kernel<<<unsigned(grid), kWarps * 32, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

void mask_scores(const MaskParams& mp) {
  const int64_t saved_n = mp.R * mp.H * mp.C;
  float* saved = static_cast<float*>(workspace(kWsScores, size_t(std::max<int64_t>(saved_n, 1)) * 4));
  if (saved_n > 0) {
    mask_save<<<grid_of(saved_n), 256, 0, stream()>>>(mp, saved);
    TOPK_CUDA_LAUNCH();
  }
  mask_clear<<<grid_of(mp.R * mp.H * mp.S), 256, 0, stream()>>>(mp);
  TOPK_CUDA_LAUNCH();
  if (saved_n > 0) {
    mask_restore<<<grid_of(saved_n), 256, 0, stream()>>>(mp, saved);
    TOPK_CUDA_LAUNCH();
  }
}

}  // namespace topk::cuda
