// Sparse attention backward over given indices [B, T, Hsel, K] on CUDA, deterministic with no
// floating-point atomics. Per range of query rows (sized so that the per-entry arrays stay
// under kWorkspaceBudget):
//   entries  a block per (row, KV head): for every list entry, p = exp(s - lse) and
//            dS = scale p (dout . v - Delta), to [rows, Hq, K] arrays (invalid entries: 0);
//   dQ       per (row, head), sum over its K entries in slot order: dq = sum dS k;
//   invert   each valid list entry's key id ((batch row of the key) * Hkv + KV head; invalid
//            entries get a sentinel past them all), then a stable radix sort of (key id, entry)
//            pairs, so that each key's entries stay in entry order;
//   dK/dV    per key id (TPR threads, 8 dims each): binary search of its run in the sorted
//            keys, then dk += dS q and dv += p dout over the run in order. The first row range
//            writes every key id (0 without entries: padding rows included), later ranges add
//            to what is there, so the sums run in entry order whatever the ranges.
// Invalid indices (< 0 or >= S_b) are skipped, duplicates count once per appearance, and a row
// with no valid entry (lse = +inf) passes no gradient, as in ref::sparse_backward.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "attention/cuda/common.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kHeadChunk = 8;  // heads of a group whose q and dout rows sit in shared memory

struct SparseBwdArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0, R;  // first compact row of the range; rows of the call
  int Hq, Hkv, G, Hsel;
  int64_t K, Tq, Smax;
  float sl2, scale;
  bool kvvec, qvec, ovec;  // 16-byte aligned rows of k and v, q, dout
  DRows q, k, v, dout;     // q, dout [B, Tq, Hq, D]; k, v [B, Smax, Hkv, D]; any float dtype
  const int32_t* idx;      // [B, Tq, Hsel, K]
  const float2* ld;        // [Hq, R]: (lse log2 e, Delta)
  float* P;                // [rows, Hq, K]
  float* dS;               // [rows, Hq, K], scale folded in
  float* dq;               // [B, Tq, Hq, D]
  float* dk;               // [B, Smax, Hkv, D]
  float* dv;               // [B, Smax, Hkv, D]
  uint32_t* keys;          // [E] key id per list entry of the range
  int32_t* vals;           // [E] entry index
  const uint32_t* skeys;   // [E] sorted
  const int32_t* svals;    // [E] entries in key order
  int64_t E;               // rows * Hsel * K
  int64_t nkeys;           // B * Smax * Hkv (the sentinel)
  bool accumulate;         // a later row range: add to dk, dv
};

// Dims 8 g .. 8 g + 7 of element offset off (a multiple of 8) of r, any float dtype, as fp32.
__device__ __forceinline__ void load8(const DRows& r, int64_t off, bool vec, float (&x)[8]) {
  if (r.dt == kF32) cvt8(load_part(r, off, 0, vec), load_part(r, off, 1, vec), x);
  else cvt8(load_part(r, off, 0, vec), r.dt, x);
}

__device__ __forceinline__ float dot8(const float* a, const float (&b)[8]) {
  const float4 x = *reinterpret_cast<const float4*>(a), y = *reinterpret_cast<const float4*>(a + 4);
  float d = x.x * b[0];
  d = fmaf(x.y, b[1], d);
  d = fmaf(x.z, b[2], d);
  d = fmaf(x.w, b[3], d);
  d = fmaf(y.x, b[4], d);
  d = fmaf(y.y, b[5], d);
  d = fmaf(y.z, b[6], d);
  return fmaf(y.w, b[7], d);
}

// A block per (row of the range, KV head); TPR threads per key row, SLOTS entries at a time.
template <int D>
__global__ void __launch_bounds__(kThreads) sparse_entry_kernel(const SparseBwdArgs a) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  __shared__ __align__(16) float sq[kHeadChunk][D];
  __shared__ __align__(16) float sdo[kHeadChunk][D];
  __shared__ float2 sld[kHeadChunk];
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  const int64_t rr = blockIdx.x / a.Hkv;
  const int kvh = int(blockIdx.x % a.Hkv);
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t row = s.q_start + (r - s.r0), qrow = int64_t(s.batch) * a.Tq + row;
  const bool per_head = a.Hsel == a.Hq;
  const int64_t kbase = a.k.offset(s.batch, s.k_start, kvh) + dg * 8;
  const int64_t vbase = a.v.offset(s.batch, s.k_start, kvh) + dg * 8;
  for (int c0 = 0; c0 < a.G; c0 += kHeadChunk) {
    const int nh = min(kHeadChunk, a.G - c0), h0 = kvh * a.G + c0;
    __syncthreads();  // the previous chunk's rows are no longer read
    for (int e = tid; e < nh * D; e += kThreads) {
      const int hl = e / D, d = e % D;
      sq[hl][d] = load1(a.q.data, a.q.dt, a.q.offset(s.batch, row, h0 + hl) + d);
      sdo[hl][d] = load1(a.dout.data, a.dout.dt, a.dout.offset(s.batch, row, h0 + hl) + d);
    }
    if (tid < nh) sld[tid] = a.ld[int64_t(h0 + tid) * a.R + r];
    __syncthreads();
    // Per-head lists: one per head of the chunk; group-shared: one list for all of them.
    const int nlists = per_head ? nh : 1;
    for (int li = 0; li < nlists; li++) {
      const int hb = per_head ? li : 0, he = per_head ? li + 1 : nh;
      const int32_t* list = a.idx + (qrow * a.Hsel + (per_head ? h0 + li : kvh)) * a.K;
      for (int64_t i0 = 0; i0 < a.K; i0 += SLOTS) {  // uniform over the block
        const int64_t i = i0 + slot;
        const int32_t j = i < a.K ? list[i] : -1;
        const bool valid = j >= 0 && j < s.S;
        float kx[8], vx[8];
        if (valid) {
          load8(a.k, kbase + int64_t(j) * a.k.st, a.kvvec, kx);
          load8(a.v, vbase + int64_t(j) * a.v.st, a.kvvec, vx);
        } else {
#pragma unroll
          for (int e = 0; e < 8; e++) kx[e] = vx[e] = 0.f;
        }
        for (int hl = hb; hl < he; hl++) {
          float sd = dot8(&sq[hl][dg * 8], kx), pd = dot8(&sdo[hl][dg * 8], vx);
#pragma unroll
          for (int off = TPR / 2; off >= 1; off >>= 1) {
            sd += __shfl_xor_sync(0xffffffffu, sd, off);
            pd += __shfl_xor_sync(0xffffffffu, pd, off);
          }
          if (dg == 0 && i < a.K) {
            const float2 x = sld[hl];
            const float pv = valid ? ex2(fmaf(sd, a.sl2, -x.x)) : 0.f;  // 0 when lse = +inf
            const int64_t e = (rr * a.Hq + h0 + hl) * a.K + i;
            a.P[e] = pv;
            a.dS[e] = a.scale * pv * (pd - x.y);
          }
        }
      }
    }
  }
}

// dq of (row, head): TPR threads per head, 8 dims each, the K entries in slot order, U rows of
// k in flight.
template <int D>
__global__ void __launch_bounds__(kThreads) sparse_dq_kernel(const SparseBwdArgs a) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR, U = 4;
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  const int nhb = (a.Hq + SLOTS - 1) / SLOTS;
  const int64_t rr = blockIdx.x / nhb;
  const int h = int(blockIdx.x % nhb) * SLOTS + slot;
  if (h >= a.Hq) return;
  const int kvh = h / a.G;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + (r - s.r0);
  const int32_t* list = a.idx + (qrow * a.Hsel + (a.Hsel == a.Hq ? h : kvh)) * a.K;
  const float* w = a.dS + (rr * a.Hq + h) * a.K;
  const int64_t kbase = a.k.offset(s.batch, s.k_start, kvh) + dg * 8;
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int64_t i0 = 0; i0 < a.K; i0 += U) {
    float x[U][8], wu[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int64_t i = i0 + u;
      const int32_t j = i < a.K ? list[i] : -1;
      const bool valid = j >= 0 && j < s.S;
      wu[u] = valid ? w[i] : 0.f;
      if (valid) {
        load8(a.k, kbase + int64_t(j) * a.k.st, a.kvvec, x[u]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) x[u][e] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int e = 0; e < 8; e++) acc[e] = fmaf(wu[u], x[u][e], acc[e]);
  }
  float* out = a.dq + (qrow * a.Hq + h) * D + dg * 8;
  *reinterpret_cast<float4*>(out) = make_float4(acc[0], acc[1], acc[2], acc[3]);
  *reinterpret_cast<float4*>(out + 4) = make_float4(acc[4], acc[5], acc[6], acc[7]);
}

// The key id of every list entry of the range (the sentinel nkeys for invalid ones) and its
// index, for the sort.
__global__ void sparse_keys_kernel(const SparseBwdArgs a) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= a.E) return;
  const int64_t per_row = int64_t(a.Hsel) * a.K;
  const int64_t rr = e / per_row, rem = e % per_row;
  const int hs = int(rem / a.K);
  const int64_t i = rem % a.K;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + (r - s.r0);
  const int32_t j = a.idx[(qrow * a.Hsel + hs) * a.K + i];
  const int kvh = a.Hsel == a.Hq ? hs / a.G : hs;
  a.keys[e] = j >= 0 && j < s.S
                  ? uint32_t((int64_t(s.batch) * a.Smax + s.k_start + j) * a.Hkv + kvh)
                  : uint32_t(a.nkeys);
  a.vals[e] = int32_t(e);
}

// First position of the sorted keys holding a key >= x.
__device__ __forceinline__ int64_t lower_bound(const uint32_t* keys, int64_t n, uint32_t x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (keys[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// dk, dv of a key id (row of the key in the [B * Smax, Hkv] layout, times Hkv, plus KV head):
// TPR threads, 8 dims each, over the id's entries in entry order.
template <int D>
__global__ void __launch_bounds__(kThreads) sparse_dkdv_kernel(const SparseBwdArgs a) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  const int64_t kid = int64_t(blockIdx.x) * SLOTS + slot;
  if (kid >= a.nkeys) return;
  float ak[8], av[8];
  float* pk = a.dk + kid * D + dg * 8;
  float* pv = a.dv + kid * D + dg * 8;
#pragma unroll
  for (int e = 0; e < 8; e++) ak[e] = a.accumulate ? pk[e] : 0.f;
#pragma unroll
  for (int e = 0; e < 8; e++) av[e] = a.accumulate ? pv[e] : 0.f;
  const int64_t lo = lower_bound(a.skeys, a.E, uint32_t(kid));
  const int64_t hi = lower_bound(a.skeys, a.E, uint32_t(kid + 1));
  const int64_t per_row = int64_t(a.Hsel) * a.K;
  const bool per_head = a.Hsel == a.Hq;
  for (int64_t p = lo; p < hi; p++) {
    const int64_t e = a.svals[p];
    const int64_t rr = e / per_row, rem = e % per_row;
    const int hs = int(rem / a.K);
    const int64_t i = rem % a.K;
    const int64_t r = a.r0 + rr;
    const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
    const int64_t row = s.q_start + (r - s.r0);
    const int h0 = per_head ? hs : hs * a.G, nh = per_head ? 1 : a.G;
    for (int hh = 0; hh < nh; hh++) {
      const int h = h0 + hh;
      const int64_t ew = (rr * a.Hq + h) * a.K + i;
      const float wd = a.dS[ew], wp = a.P[ew];
      float qx[8], ox[8];
      load8(a.q, a.q.offset(s.batch, row, h) + dg * 8, a.qvec, qx);
      load8(a.dout, a.dout.offset(s.batch, row, h) + dg * 8, a.ovec, ox);
#pragma unroll
      for (int c = 0; c < 8; c++) {
        ak[c] = fmaf(wd, qx[c], ak[c]);
        av[c] = fmaf(wp, ox[c], av[c]);
      }
    }
  }
  *reinterpret_cast<float4*>(pk) = make_float4(ak[0], ak[1], ak[2], ak[3]);
  *reinterpret_cast<float4*>(pk + 4) = make_float4(ak[4], ak[5], ak[6], ak[7]);
  *reinterpret_cast<float4*>(pv) = make_float4(av[0], av[1], av[2], av[3]);
  *reinterpret_cast<float4*>(pv + 4) = make_float4(av[4], av[5], av[6], av[7]);
}

template <int D>
void run_sparse_backward(SparseBwdArgs a, int64_t rows) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  // Bytes per row of the range: P and dS per head, two buffers each of keys and entries per list.
  const int64_t per_row = int64_t(a.Hq) * a.K * 8 + int64_t(a.Hsel) * a.K * 16;
  const int64_t step = std::max<int64_t>(1, int64_t(workspace_budget()) / std::max<int64_t>(1, per_row));
  int end_bit = 1;
  while ((int64_t(1) << end_bit) <= a.nkeys) end_bit++;  // the sentinel nkeys must fit too
  const int64_t kblocks = (a.nkeys + SLOTS - 1) / SLOTS;
  const int nhb = (a.Hq + SLOTS - 1) / SLOTS;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    const int64_t nr = std::min(rows, r0 + step) - r0;
    a.r0 = r0;
    a.E = nr * a.Hsel * a.K;
    a.accumulate = r0 > 0;
    TOPK_CHECK(a.E < (int64_t(1) << 31) && nr * a.Hkv < (int64_t(1) << 31) && nr * nhb < (int64_t(1) << 31),
               "sparse_attention_backward: %lld index entries in one range, more than 2^31",
               (long long)a.E);
    float* entry = static_cast<float*>(workspace(kWsEntry, size_t(nr * a.Hq * a.K) * 8));
    a.P = entry;
    a.dS = entry + nr * a.Hq * a.K;
    sparse_entry_kernel<D><<<unsigned(nr * a.Hkv), kThreads, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
    sparse_dq_kernel<D><<<unsigned(nr * nhb), kThreads, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
    if (a.E > 0) {
      char* sort = static_cast<char*>(workspace(kWsSort, size_t(a.E) * 16));
      uint32_t* k0 = reinterpret_cast<uint32_t*>(sort);
      int32_t* v0 = reinterpret_cast<int32_t*>(sort + size_t(a.E) * 8);
      a.keys = k0;
      a.vals = v0;
      sparse_keys_kernel<<<unsigned((a.E + 255) / 256), 256, 0, stream()>>>(a);
      TOPK_CUDA_LAUNCH();
      cub::DoubleBuffer<uint32_t> keys(k0, k0 + a.E);
      cub::DoubleBuffer<int32_t> vals(v0, v0 + a.E);
      size_t temp = 0;
      TOPK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, temp, keys, vals, int(a.E), 0, end_bit, stream()));
      void* tmp = workspace(kWsSortTemp, temp);
      TOPK_CUDA(cub::DeviceRadixSort::SortPairs(tmp, temp, keys, vals, int(a.E), 0, end_bit, stream()));
      TOPK_CUDA_LAUNCH();
      a.skeys = keys.Current();
      a.svals = vals.Current();
    } else {
      a.skeys = nullptr;
      a.svals = nullptr;
    }
    if (kblocks > 0) {
      sparse_dkdv_kernel<D><<<unsigned(kblocks), kThreads, 0, stream()>>>(a);
      TOPK_CUDA_LAUNCH();
    }
  }
}

}  // namespace

void sparse_backward(const AttnParams& p) {
  SeqTable st = upload_seqs(p);
  int64_t B = 0;
  for (int i = 0; i < p.nseq; i++) B = std::max<int64_t>(B, p.seqs[i].batch + 1);
  const int64_t nkeys = B * p.Smax * p.Hkv;
  TOPK_CHECK(nkeys < (int64_t(1) << 31) - 1,
             "sparse_attention_backward: %lld (key row, KV head) pairs, more than 2^31 - 1",
             (long long)nkeys);
  if (st.rows == 0) {  // no query: every gradient of k and v is 0
    if (nkeys > 0) {
      TOPK_CUDA(cudaMemsetAsync(p.dk, 0, size_t(nkeys) * p.D * sizeof(float), stream()));
      TOPK_CUDA(cudaMemsetAsync(p.dv, 0, size_t(nkeys) * p.D * sizeof(float), stream()));
    }
    return;
  }
  float* ld = static_cast<float*>(workspace(kWsLD, size_t(st.rows) * p.Hq * 2 * sizeof(float)));
  SparseBwdArgs a{};
  a.seqs = st.d;
  a.nseq = st.n;
  a.R = st.rows;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  a.Hsel = p.Hsel;
  a.K = p.K;
  a.Tq = p.Tq;
  a.Smax = p.Smax;
  a.scale = p.scale;
  a.sl2 = float(double(p.scale) * 1.4426950408889634);
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  a.dout = drows(p.dout);
  a.kvvec = rows_aligned(a.k) && rows_aligned(a.v);
  a.qvec = rows_aligned(a.q);
  a.ovec = rows_aligned(a.dout);
  a.idx = p.idx;
  a.ld = reinterpret_cast<const float2*>(ld);
  a.dq = p.dq;
  a.dk = p.dk;
  a.dv = p.dv;
  a.nkeys = nkeys;
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "sparse_attention_backward",
      launch_bwd_prep(p, st, ld, nullptr, 0);
      run_sparse_backward<kD>(a, st.rows));
}

}  // namespace topk::cuda
