// Exact single-block top-k selection over one row of scores in global memory, shared by the
// select kernels and the fallback of the fused top-k decode. A block of kSelThreads threads
// with kSelSmem bytes of dynamic shared memory runs a radix select on order-preserving 32-bit
// keys:
//   pass 1  histogram of the top 12 bits over the row -> threshold bin b1;
//   pass 2  ordered gather: keys above b1 are selected, keys in b1 become candidates (kept in
//           shared memory in index order when they fit, else re-read from the row);
//   pass 3-4 histograms of bits 19..8 and 7..0 over the candidates -> the exact threshold key T;
//   final   candidates above T are selected, and of those equal to T the lowest indices.
// Exact, ties to the lower index, like the reference.
#pragma once
#include "attention/cuda/common.cuh"
#include "attention/cuda/reduce.cuh"

namespace topk::cuda {

constexpr int kSelThreads = 512;
constexpr int kItems = 16;  // consecutive elements per thread and tile step: 4 loads in flight
constexpr int kSelTile = kSelThreads * kItems;
constexpr int kBins = 4096;
constexpr int kBinsPerThread = kBins / kSelThreads;
constexpr int kCap = 8192;  // candidates kept in shared memory
constexpr size_t kSelSmem = kBins * 4 + kCap * 8;

// The bin holding the need-th largest element (need >= 1) of a histogram of nbins <= 4096,
// and the count of elements in higher bins. Every thread gets the result.
__device__ inline void find_bin(const int* hist, int nbins, int need, int* tmp, int* s_res, int& bin,
                         int& above) {
  int loc[kBinsPerThread];
  int sum = 0;
#pragma unroll
  for (int c = 0; c < kBinsPerThread; c++) {
    int b = nbins - 1 - (int(threadIdx.x) * kBinsPerThread + c);
    loc[c] = b >= 0 ? hist[b] : 0;
    sum += loc[c];
  }
  int total;
  int run = block_exclusive_scan(sum, tmp, &total);
#pragma unroll
  for (int c = 0; c < kBinsPerThread; c++) {
    int b = nbins - 1 - (int(threadIdx.x) * kBinsPerThread + c);
    if (b >= 0 && run < need && run + loc[c] >= need) {
      s_res[0] = b;
      s_res[1] = run;
    }
    run += loc[c];
  }
  __syncthreads();
  bin = s_res[0];
  above = s_res[1];
  __syncthreads();
}

// Max (is_max) or sum of x over the block; every thread gets it. red: kSelThreads / 32 floats.
__device__ inline float block_reduce(float x, bool is_max, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) {
    float y = __shfl_xor_sync(0xffffffffu, x, o);
    x = is_max ? fmaxf(x, y) : x + y;
  }
  if (lane == 0) red[warp] = x;
  __syncthreads();
  x = red[0];
  for (int w = 1; w < kSelThreads / 32; w++) x = is_max ? fmaxf(x, red[w]) : x + red[w];
  __syncthreads();
  return x;
}

// Keys of the kItems consecutive elements i0.. of a row (0 past hi), loads issued together.
__device__ __forceinline__ void load_keys(const float* row, int64_t i0, int64_t hi, bool aligned,
                                          uint32_t (&key)[kItems]) {
  if (aligned && i0 + kItems <= hi) {
    float4 x[kItems / 4];
#pragma unroll
    for (int q = 0; q < kItems / 4; q++) x[q] = reinterpret_cast<const float4*>(row + i0)[q];
#pragma unroll
    for (int q = 0; q < kItems / 4; q++) {
      key[4 * q] = order_key(x[q].x);
      key[4 * q + 1] = order_key(x[q].y);
      key[4 * q + 2] = order_key(x[q].z);
      key[4 * q + 3] = order_key(x[q].w);
    }
  } else {
#pragma unroll
    for (int c = 0; c < kItems; c++) key[c] = i0 + c < hi ? order_key(row[i0 + c]) : 0u;
  }
}

// Passes 3, 4 and the final pass over the candidates of top bin b1 (need1 of them to take):
// shared memory (index order, in_smem) or the row [lo, hi) filtered by the top digit. Writes
// the chosen candidates to out[0 .. need1).
__device__ inline void resolve_candidates(const float* row, int64_t lo, int64_t hi, int b1, int need1,
                                   bool in_smem, int neq, int* hist, const uint32_t* ckey,
                                   const int32_t* cidx, int* tmp, int* s_res, int32_t* out) {
  const int tid = threadIdx.x;
  // The candidates: shared memory (index order) or the row filtered by the top digit.
  const int64_t cb = in_smem ? 0 : lo, ce = in_smem ? neq : hi;
  auto get = [&](int64_t i, uint32_t& key, int64_t& idx) -> bool {
    if (in_smem) {
      key = ckey[i];
      idx = cidx[i];
      return true;
    }
    key = order_key(row[i]);
    idx = i;
    return int(key >> 20) == b1;
  };

  // Pass 3: bits 19..8.
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int64_t i = cb + tid; i < ce; i += kSelThreads) {
    uint32_t key;
    int64_t idx;
    if (get(i, key, idx)) atomicAdd(&hist[(key >> 8) & 0xfff], 1);
  }
  __syncthreads();
  int b2, a2;
  find_bin(hist, kBins, need1, tmp, s_res, b2, a2);
  const int need2 = need1 - a2;
  const uint32_t pre2 = (uint32_t(b1) << 12) | uint32_t(b2);

  // Pass 4: bits 7..0.
  for (int i = tid; i < 256; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int64_t i = cb + tid; i < ce; i += kSelThreads) {
    uint32_t key;
    int64_t idx;
    if (get(i, key, idx) && (key >> 8) == pre2) atomicAdd(&hist[key & 0xff], 1);
  }
  __syncthreads();
  int b3, a3;
  find_bin(hist, 256, need2, tmp, s_res, b3, a3);
  const int need3 = need2 - a3;
  const uint32_t T = (pre2 << 8) | uint32_t(b3);

  // Final: candidates above T, then the need3 lowest indices equal to T.
  {
    int32_t* gt_out = out;
    int32_t* eq_out = out + a2 + a3;
    int ngt = 0, neqr = 0;
    for (int64_t t0 = cb; t0 < ce; t0 += kSelTile) {
      uint32_t key[kItems];
      int32_t idx[kItems];
      bool ok[kItems];
      int cg = 0, ceq = 0;
#pragma unroll
      for (int c = 0; c < kItems; c++) {
        int64_t i = t0 + int64_t(tid) * kItems + c;
        int64_t ix = 0;
        ok[c] = i < ce && get(i, key[c], ix);
        idx[c] = int32_t(ix);
        if (ok[c]) {
          cg += key[c] > T;
          ceq += key[c] == T;
        }
      }
      int tot;
      int off = block_exclusive_scan((cg << 16) | ceq, tmp, &tot);
      int og = ngt + (off >> 16), oe = neqr + (off & 0xffff);
#pragma unroll
      for (int c = 0; c < kItems; c++) {
        if (!ok[c]) continue;
        if (key[c] > T) gt_out[og++] = int32_t(idx[c]);
        else if (key[c] == T) {
          if (oe < need3) eq_out[oe] = int32_t(idx[c]);
          oe++;
        }
      }
      ngt += tot >> 16;
      neqr += tot & 0xffff;
    }
  }
}

// Pass 2 over row[s0, s1): in index order, keys whose top digit is above b1 go to sel (from
// position nsure on), keys in bin b1 to ckey/cidx (from position ncand on, when in_smem). The
// outputs may be another block's shared memory (the cluster select).
__device__ inline void ordered_gather(const float* row, int64_t s0, int64_t s1, bool aligned,
                                      int b1, bool in_smem, int nsure, int ncand, int* tmp,
                                      int32_t* sel, uint32_t* ckey, int32_t* cidx) {
  const int tid = threadIdx.x;
  for (int64_t t0 = s0; t0 < s1; t0 += kSelTile) {
    uint32_t key[kItems];
    int64_t i0 = t0 + int64_t(tid) * kItems;
    load_keys(row, i0, s1, aligned, key);
    int cs = 0, cc = 0;
#pragma unroll
    for (int c = 0; c < kItems; c++) {
      if (i0 + c >= s1) continue;
      int d = int(key[c] >> 20);
      cs += d > b1;
      cc += d == b1;
    }
    int tot;
    int off = block_exclusive_scan((cs << 16) | cc, tmp, &tot);
    int os = nsure + (off >> 16), oc = ncand + (off & 0xffff);
#pragma unroll
    for (int c = 0; c < kItems; c++) {
      if (i0 + c >= s1) continue;
      int d = int(key[c] >> 20);
      if (d > b1) sel[os++] = int32_t(i0 + c);
      else if (d == b1 && in_smem) {
        ckey[oc] = key[c];
        cidx[oc] = int32_t(i0 + c);
        oc++;
      }
    }
    nsure += tot >> 16;
    ncand += tot & 0xffff;
  }
}

// Selects the `take` best keys of row[lo, hi) (0 < take < hi - lo) into sel[0 .. take), in
// no particular order. smem: kSelSmem bytes of dynamic shared memory; tmp [33], s_res [2].
__device__ inline void select_row_block(const float* row, int64_t lo, int64_t hi, int64_t take,
                                        int* smem, int* tmp, int* s_res, int32_t* sel) {
  const int tid = threadIdx.x;
  int* hist = smem;                                            // [kBins]
  uint32_t* ckey = reinterpret_cast<uint32_t*>(smem + kBins);  // [kCap]
  int32_t* cidx = reinterpret_cast<int32_t*>(ckey + kCap);     // [kCap]
  // Pass 1: histogram of the top 12 bits.
  const bool aligned = (reinterpret_cast<uintptr_t>(row + lo) & 15) == 0;  // then every i0 is
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int64_t t0 = lo; t0 < hi; t0 += kSelTile) {
    uint32_t key[kItems];
    int64_t i0 = t0 + int64_t(tid) * kItems;
    load_keys(row, i0, hi, aligned, key);
#pragma unroll
    for (int c = 0; c < kItems; c++)
      if (i0 + c < hi) atomicAdd(&hist[key[c] >> 20], 1);
  }
  __syncthreads();
  int b1, a1;
  find_bin(hist, kBins, int(take), tmp, s_res, b1, a1);
  const int need1 = int(take) - a1;
  const int neq = hist[b1];
  const bool in_smem = neq <= kCap;

  // Pass 2: ordered gather over the row.
  ordered_gather(row, lo, hi, aligned, b1, in_smem, 0, 0, tmp, sel, ckey, cidx);
  __syncthreads();

  resolve_candidates(row, lo, hi, b1, need1, in_smem, neq, hist, ckey, cidx, tmp, s_res, sel + a1);
}

// select_row_block out of line, for the rare fallback of select_row_sampled: inlined twice in
// one kernel it pushes the kernel past its 64 registers.
static __device__ __noinline__ void select_row_block_call(const float* row, int64_t lo, int64_t hi,
                                                   int64_t take, int* smem, int* tmp, int* s_res,
                                                   int32_t* sel) {
  select_row_block(row, lo, hi, take, smem, tmp, s_res, sel);
}

// Rows at least this long, with budgets of at most kSampledTake, take select_row_sampled.
constexpr int64_t kSampledMin = 2 * kSelTile;
constexpr int64_t kSampledTake = kCap / 3;

// select_row_block for long rows with one read instead of two: a sample of a 16th of the row
// (groups of 8 keys spread over it, at most kCap keys) gives a threshold tau a few deviations
// below the take-th best; one ordered pass keeps the keys >= tau in shared memory; the exact
// selection runs among them (the top digit, then resolve_candidates). When the sample misleads
// (fewer than take keys >= tau, or more than kCap) it falls back to select_row_block, so the
// result is the same either way. Same contract as select_row_block (take <= kSampledTake).
__device__ inline void select_row_sampled(const float* row, int64_t lo, int64_t hi, int64_t take,
                                          int* smem, int* tmp, int* s_res, int32_t* sel) {
  const int tid = threadIdx.x;
  int* hist = smem;                                            // [kBins]
  uint32_t* ckey = reinterpret_cast<uint32_t*>(smem + kBins);  // [kCap]
  int32_t* cidx = reinterpret_cast<int32_t*>(ckey + kCap);     // [kCap]
  const int64_t m = hi - lo;
  const int groups = int(m / 128 < kCap / 8 ? m / 128 : kCap / 8);
  const int ns = groups * 8;
  const float share = float(take) * float(ns) / float(m);
  const int rk = int(ceilf(share + 3.f * sqrtf(share))) + 8;
  if (groups < 2 || rk >= ns) {
    select_row_block_call(row, lo, hi, take, smem, tmp, s_res, sel);
    return;
  }
  // The sample's keys, and their top digit's histogram. Group g starts at lo + g * stride
  // (the last group ends at most at hi - 1); a thread's loads are issued in batches of
  // kSampleBatch before any of its histogram atomics, so they wait for memory once per batch
  // instead of once per key.
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  const int64_t stride = (m - 8) / (groups - 1);
  constexpr int kSampleBatch = 8;
  for (int b0 = 0; b0 < ns; b0 += kSampleBatch * kSelThreads) {
    float x[kSampleBatch];
#pragma unroll
    for (int c = 0; c < kSampleBatch; c++) {
      const int i = b0 + c * kSelThreads + tid;
      x[c] = i < ns ? row[lo + (i >> 3) * stride + (i & 7)] : 0.f;
    }
#pragma unroll
    for (int c = 0; c < kSampleBatch; c++) {
      const int i = b0 + c * kSelThreads + tid;
      if (i < ns) {
        const uint32_t k = order_key(x[c]);
        ckey[i] = k;
        atomicAdd(&hist[k >> 20], 1);
      }
    }
  }
  __syncthreads();
  int b1, a1;
  find_bin(hist, kBins, rk, tmp, s_res, b1, a1);
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int i = tid; i < ns; i += kSelThreads)
    if (int(ckey[i] >> 20) == b1) atomicAdd(&hist[(ckey[i] >> 8) & 0xfff], 1);
  __syncthreads();
  int b2, a2;
  find_bin(hist, kBins, rk - a1, tmp, s_res, b2, a2);
  // tau: the lower edge of the 24-bit bin that holds the sample's rk-th best key.
  const uint32_t tau = (uint32_t(b1) << 20) | (uint32_t(b2) << 8);

  // One ordered pass: the keys >= tau into ckey/cidx (the sample is no longer needed).
  const bool aligned = (reinterpret_cast<uintptr_t>(row + lo) & 15) == 0;
  int kept = 0;
  for (int64_t t0 = lo; t0 < hi; t0 += kSelTile) {
    uint32_t key[kItems];
    const int64_t i0 = t0 + int64_t(tid) * kItems;
    load_keys(row, i0, hi, aligned, key);
    int c = 0;
#pragma unroll
    for (int j = 0; j < kItems; j++) c += i0 + j < hi && key[j] >= tau;
    int tot;
    int pos = kept + block_exclusive_scan(c, tmp, &tot);
#pragma unroll
    for (int j = 0; j < kItems; j++)
      if (i0 + j < hi && key[j] >= tau) {
        if (pos < kCap) {
          ckey[pos] = key[j];
          cidx[pos] = int32_t(i0 + j);
        }
        pos++;
      }
    kept += tot;
  }
  __syncthreads();
  if (kept < take || kept > kCap) {
    select_row_block_call(row, lo, hi, take, smem, tmp, s_res, sel);
    return;
  }

  // The exact selection among the kept keys: their top digit's bin c1 holding the take-th
  // best; keys above it are selected, keys in it move (in order) to the front of ckey/cidx for
  // resolve_candidates. Entries only move to places at or before their own, and each tile is
  // read before the scan's barriers let any thread write.
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  __syncthreads();
  for (int i = tid; i < kept; i += kSelThreads) atomicAdd(&hist[ckey[i] >> 20], 1);
  __syncthreads();
  int c1, above;
  find_bin(hist, kBins, int(take), tmp, s_res, c1, above);
  const int neq = hist[c1];
  int nsure = 0, ncand = 0;
  for (int t0 = 0; t0 < kept; t0 += kSelTile) {
    uint32_t key[kItems];
    int32_t idx[kItems];
    int cs = 0, cc = 0;
#pragma unroll
    for (int j = 0; j < kItems; j++) {
      const int i = t0 + tid * kItems + j;
      key[j] = i < kept ? ckey[i] : 0u;
      idx[j] = i < kept ? cidx[i] : 0;
      if (i < kept) {
        cs += int(key[j] >> 20) > c1;
        cc += int(key[j] >> 20) == c1;
      }
    }
    int tot;
    const int off = block_exclusive_scan((cs << 16) | cc, tmp, &tot);
    int os = nsure + (off >> 16), oc = ncand + (off & 0xffff);
#pragma unroll
    for (int j = 0; j < kItems; j++) {
      const int i = t0 + tid * kItems + j;
      if (i >= kept) continue;
      const int d = int(key[j] >> 20);
      if (d > c1) sel[os++] = idx[j];
      else if (d == c1) {
        ckey[oc] = key[j];
        cidx[oc] = idx[j];
        oc++;
      }
    }
    nsure += tot >> 16;
    ncand += tot & 0xffff;
  }
  __syncthreads();
  resolve_candidates(row, lo, hi, c1, int(take) - above, true, neq, hist, ckey, cidx, tmp, s_res,
                     sel + above);
}

}  // namespace topk::cuda
