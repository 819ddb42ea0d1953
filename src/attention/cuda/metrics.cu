// Attention metrics on CUDA: entropy of each query head's full softmax and the softmax mass of
// a selection. Score rows come from the score pass (scores.cu) into a workspace, in row ranges
// that keep it under workspace_budget(); then a block per (row, head) reduces its row:
//   entropy  m = max, l = sum e^(s - m), H = ln l - sum e^(s - m) (s - m) / l (= -sum a ln a),
//            normalized H / ln n; both 0 for n <= 1;
//   mass     sum of e^(s_j - lse) over the distinct valid keys of the row's list: each entry
//            first reads its probability, then the entries mark their key in the (now unused)
//            score row with the lowest slot that lists it (atomicMin on ints: exact, any order),
//            and only that slot counts, so duplicates count once and the sum order is fixed.
// Sums go per thread in a fixed stride, then through a fixed tree: deterministic.
#include <algorithm>
#include <climits>
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;

struct MetricArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0;
  int Hq, G, Hsel;
  int64_t Smax, Tq, K;
  bool causal;
  float* scores;        // compact [rows, Hq, Smax] of the range
  const int32_t* idx;   // [B, Tq, Hsel, K]
  float* pbuf;          // [rows, Hq, K]: probability of each entry
  float* entropy;       // [B, Tq, Hq]
  float* normalized;    // [B, Tq, Hq] or null
  float* mass;          // [B, Tq, Hq]
};

// Block-wide max / sum through shared memory tmp[32] (fixed tree; every thread gets the result).
template <bool MAX>
__device__ __forceinline__ float block_reduce(float x, float* tmp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, off);
    x = MAX ? fmaxf(x, y) : x + y;
  }
  __syncthreads();  // tmp is free (an earlier reduction's readers are done)
  if (lane == 0) tmp[warp] = x;
  __syncthreads();
  x = lane < int(blockDim.x >> 5) ? tmp[lane] : (MAX ? -INFINITY : 0.f);
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) {
    const float y = __shfl_xor_sync(0xffffffffu, x, off);
    x = MAX ? fmaxf(x, y) : x + y;
  }
  return x;
}

// The row's max m and sum l = sum e^(s - m) over its n visible keys (l = 0 when n = 0).
__device__ __forceinline__ void row_softmax(const float* row, int64_t n, float* tmp, float& m, float& l) {
  float x = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) x = fmaxf(x, row[j]);
  m = block_reduce<true>(x, tmp);
  float y = 0.f;
  if (m > -INFINITY)
    for (int64_t j = threadIdx.x; j < n; j += kThreads) y += expf(row[j] - m);
  l = block_reduce<false>(y, tmp);
}

__global__ void __launch_bounds__(kThreads) entropy_kernel(const MetricArgs a) {
  __shared__ float tmp[32];
  const int64_t rr = blockIdx.x / a.Hq;
  const int h = int(blockIdx.x % a.Hq);
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  const float* row = a.scores + (rr * a.Hq + h) * a.Smax;
  float m, l;
  row_softmax(row, n, tmp, m, l);
  float y = 0.f;
  if (l > 0.f)
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      const float x = row[j] - m;
      y = fmaf(expf(x), x, y);
    }
  y = block_reduce<false>(y, tmp);
  if (threadIdx.x == 0) {
    const float H = n > 1 && l > 0.f ? logf(l) - y / l : 0.f;
    const int64_t o = (int64_t(s.batch) * a.Tq + s.q_start + t) * a.Hq + h;
    a.entropy[o] = H;
    if (a.normalized) a.normalized[o] = n > 1 ? float(double(H) / log(double(n))) : 0.f;
  }
}

__global__ void __launch_bounds__(kThreads) mass_kernel(const MetricArgs a) {
  __shared__ float tmp[32];
  const int64_t rr = blockIdx.x / a.Hq;
  const int h = int(blockIdx.x % a.Hq);
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  float* row = a.scores + (rr * a.Hq + h) * a.Smax;
  int* mark = reinterpret_cast<int*>(row);
  const int32_t* list = a.idx + (qrow * a.Hsel + (a.Hsel == a.Hq ? h : h / a.G)) * a.K;
  float* pb = a.pbuf + (rr * a.Hq + h) * a.K;
  float m, l;
  row_softmax(row, n, tmp, m, l);
  const float lse = l > 0.f ? m + logf(l) : INFINITY;
  // Entry i counts key list[i] when it lies in [0, n) (a valid index of a visible key).
  auto key = [&](int64_t i) {
    const int32_t j = list[i];
    return j >= 0 && j < n ? j : -1;
  };
  for (int64_t i = threadIdx.x; i < a.K; i += kThreads) {
    const int32_t j = key(i);
    pb[i] = j >= 0 ? expf(row[j] - lse) : 0.f;
  }
  __syncthreads();  // every probability is read before the row turns into marks
  for (int64_t i = threadIdx.x; i < a.K; i += kThreads) {
    const int32_t j = key(i);
    if (j >= 0) mark[j] = INT_MAX;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < a.K; i += kThreads) {
    const int32_t j = key(i);
    if (j >= 0) atomicMin(&mark[j], int(i));
  }
  __syncthreads();
  float y = 0.f;
  for (int64_t i = threadIdx.x; i < a.K; i += kThreads) {
    const int32_t j = key(i);
    if (j >= 0 && mark[j] == int(i)) y += pb[i];
  }
  y = block_reduce<false>(y, tmp);
  if (threadIdx.x == 0) a.mass[qrow * a.Hq + h] = y;
}

MetricArgs metric_args(const AttnParams& p, const SeqTable& st) {
  MetricArgs a{};
  a.seqs = st.d;
  a.nseq = st.n;
  a.Hq = p.Hq;
  a.G = p.group();
  a.Hsel = p.Hsel;
  a.Smax = p.Smax;
  a.Tq = p.Tq;
  a.K = p.K;
  a.causal = p.causal;
  a.idx = p.idx;
  return a;
}

// Rows [r0, r1) of the call in ranges whose score rows (and extra bytes per row) stay under
// the budget; f(r0, r1, scores) after the scores of each range are in.
template <class F>
void by_ranges(const AttnParams& p, const SeqTable& st, int64_t extra_per_row, F&& f) {
  const int64_t per_row = int64_t(p.Hq) * p.Smax * 4;
  const int64_t step = std::max<int64_t>(1, int64_t(workspace_budget()) / std::max<int64_t>(1, per_row + extra_per_row));
  for (int64_t r0 = 0; r0 < st.rows; r0 += step) {
    const int64_t r1 = std::min(st.rows, r0 + step);
    TOPK_CHECK((r1 - r0) * p.Hq < (int64_t(1) << 31), "metrics: too many rows for one launch");
    float* scores = static_cast<float*>(workspace(kWsScores, size_t((r1 - r0) * per_row)));
    launch_scores(p, st, r0, r1, scores, true, false, false);
    f(r0, r1, scores);
  }
}

}  // namespace

void entropy(const AttnParams& p, float* entropy, float* normalized) {
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "attention_entropy", (void)kD);  // the score pass's head dims
  SeqTable st = upload_seqs(p);
  if (st.rows == 0) return;
  MetricArgs a = metric_args(p, st);
  a.entropy = entropy;
  a.normalized = normalized;
  by_ranges(p, st, 0, [&](int64_t r0, int64_t r1, float* scores) {
    a.r0 = r0;
    a.scores = scores;
    entropy_kernel<<<unsigned((r1 - r0) * p.Hq), kThreads, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
  });
}

void selection_mass(const AttnParams& p, float* mass) {
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "selection_mass", (void)kD);
  SeqTable st = upload_seqs(p);
  if (st.rows == 0) return;
  MetricArgs a = metric_args(p, st);
  a.mass = mass;
  const int64_t pb_row = int64_t(p.Hq) * p.K * 4;
  by_ranges(p, st, pb_row, [&](int64_t r0, int64_t r1, float* scores) {
    a.r0 = r0;
    a.scores = scores;
    a.pbuf = static_cast<float*>(workspace(kWsRank, size_t((r1 - r0) * pb_row)));
    mass_kernel<<<unsigned((r1 - r0) * p.Hq), kThreads, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
  });
}

}  // namespace topk::cuda
