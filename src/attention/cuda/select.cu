// Exact top-k selection over rank rows (scores, or group probability sums) on CUDA.
// One block per (row, selection head). Forced sink/window keys are written directly; the
// rest compete in a radix select on order-preserving 32-bit keys:
//   pass 1  histogram of the top 12 bits over the row -> threshold bin b1;
//   pass 2  ordered gather: keys above b1 are selected, keys in b1 become candidates (kept in
//           shared memory in index order when they fit, else re-read from the row);
//   pass 3-4 histograms of bits 19..8 and 7..0 over the candidates -> the exact threshold key T;
//   final   candidates above T are selected, and of those equal to T the lowest indices.
// The result is exact, ties to the lower index, like the reference; the order of the
// indices in a row is unspecified. Also the group ranking (sum of softmax probabilities).
#include <cooperative_groups.h>

#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kSelThreads = 512;
constexpr int kItems = 16;  // consecutive elements per thread and tile step: 4 loads in flight
constexpr int kSelTile = kSelThreads * kItems;
constexpr int kBins = 4096;
constexpr int kBinsPerThread = kBins / kSelThreads;
constexpr int kCap = 8192;  // candidates kept in shared memory
constexpr size_t kSelSmem = kBins * 4 + kCap * 8;

struct SelectArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0;
  int Hsel;
  int64_t Smax, Tq;
  bool causal, in_compact;
  const float* in;
  int k;
  double ratio;
  int min_k, sink, window;
  int32_t* out;
  int64_t K;
};

// The bin holding the need-th largest element (need >= 1) of a histogram of nbins <= 4096,
// and the count of elements in higher bins. Every thread gets the result.
__device__ void find_bin(const int* hist, int nbins, int need, int* tmp, int* s_res, int& bin,
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
__device__ void resolve_candidates(const float* row, int64_t lo, int64_t hi, int b1, int need1,
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

__global__ void __launch_bounds__(kSelThreads, 2) select_kernel(const SelectArgs a) {
  extern __shared__ int smem[];
  int* hist = smem;                                          // [kBins]
  uint32_t* ckey = reinterpret_cast<uint32_t*>(smem + kBins);  // [kCap]
  int32_t* cidx = reinterpret_cast<int32_t*>(ckey + kCap);     // [kCap]
  __shared__ int tmp[33];
  __shared__ int s_res[2];

  const int tid = threadIdx.x;
  const int64_t rr = blockIdx.x / a.Hsel;
  const int hs = blockIdx.x % a.Hsel;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
  const int64_t n = visible_keys(s, t, a.causal);
  const float* row = a.in + ((a.in_compact ? rr : qrow) * a.Hsel + hs) * a.Smax;
  int32_t* orow = a.out + (qrow * a.Hsel + hs) * a.K;

  const int64_t W = budget_dev(a.k, a.ratio, a.min_k, n);
  const int64_t lo = a.sink < n ? a.sink : n;
  int64_t hi = a.window < n ? n - a.window : 0;
  if (hi < lo) hi = lo;
  const int64_t forced = lo + (n - hi);
  for (int64_t i = tid; i < lo; i += kSelThreads) orow[i] = int32_t(i);
  for (int64_t i = tid; i < n - hi; i += kSelThreads) orow[lo + i] = int32_t(hi + i);
  const int64_t m = hi - lo;
  const int64_t room = W - forced;
  const int64_t take = room <= 0 ? 0 : (room < m ? room : m);
  int32_t* sel = orow + forced;
  for (int64_t i = take + forced + tid; i < a.K; i += kSelThreads) orow[i] = -1;
  if (take == 0) return;
  if (take == m) {
    for (int64_t i = tid; i < m; i += kSelThreads) sel[i] = int32_t(lo + i);
    return;
  }

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
  {
    int nsure = 0, ncand = 0;
    for (int64_t t0 = lo; t0 < hi; t0 += kSelTile) {
      uint32_t key[kItems];
      int64_t i0 = t0 + int64_t(tid) * kItems;
      load_keys(row, i0, hi, aligned, key);
      int cs = 0, cc = 0;
#pragma unroll
      for (int c = 0; c < kItems; c++) {
        if (i0 + c >= hi) continue;
        int d = int(key[c] >> 20);
        cs += d > b1;
        cc += d == b1;
      }
      int tot;
      int off = block_exclusive_scan((cs << 16) | cc, tmp, &tot);
      int os = nsure + (off >> 16), oc = ncand + (off & 0xffff);
#pragma unroll
      for (int c = 0; c < kItems; c++) {
        if (i0 + c >= hi) continue;
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
  __syncthreads();

  resolve_candidates(row, lo, hi, b1, need1, in_smem, neq, hist, ckey, cidx, tmp, s_res, sel + a1);
}

// Few long rows (decode at small batch): a cluster of kCl blocks per row. Each block
// histograms a slice; the cluster merges the histograms through distributed shared memory;
// each block gathers its slice (selected keys straight to the output, candidates in index
// order into block 0's shared memory); block 0 resolves the candidates.
constexpr int kCl = 4;

__global__ void __cluster_dims__(kCl, 1, 1) __launch_bounds__(kSelThreads, 2)
    select_cluster_kernel(const SelectArgs a) {
  namespace cg = cooperative_groups;
  extern __shared__ int smem[];
  int* hist = smem;
  uint32_t* ckey = reinterpret_cast<uint32_t*>(smem + kBins);
  int32_t* cidx = reinterpret_cast<int32_t*>(ckey + kCap);
  __shared__ int tmp[33];
  __shared__ int s_res[2];
  __shared__ int s_cnt[2];
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank());

  const int tid = threadIdx.x;
  const int64_t rr = blockIdx.y / a.Hsel;
  const int hs = blockIdx.y % a.Hsel;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
  const int64_t n = visible_keys(s, t, a.causal);
  const float* row = a.in + ((a.in_compact ? rr : qrow) * a.Hsel + hs) * a.Smax;
  int32_t* orow = a.out + (qrow * a.Hsel + hs) * a.K;

  const int64_t W = budget_dev(a.k, a.ratio, a.min_k, n);
  const int64_t lo = a.sink < n ? a.sink : n;
  int64_t hi = a.window < n ? n - a.window : 0;
  if (hi < lo) hi = lo;
  const int64_t forced = lo + (n - hi);
  const int64_t m = hi - lo;
  const int64_t room = W - forced;
  const int64_t take = room <= 0 ? 0 : (room < m ? room : m);
  int32_t* sel = orow + forced;
  if (rank == 0) {
    for (int64_t i = tid; i < lo; i += kSelThreads) orow[i] = int32_t(i);
    for (int64_t i = tid; i < n - hi; i += kSelThreads) orow[lo + i] = int32_t(hi + i);
    for (int64_t i = take + forced + tid; i < a.K; i += kSelThreads) orow[i] = -1;
    if (take == m)
      for (int64_t i = tid; i < m; i += kSelThreads) sel[i] = int32_t(lo + i);
  }
  if (take == 0 || take == m) return;  // the same for every block of the cluster

  const int64_t per = ((m + kCl - 1) / kCl + kItems - 1) / kItems * kItems;
  const int64_t s0 = lo + rank * per < hi ? lo + rank * per : hi;
  const int64_t s1 = s0 + per < hi ? s0 + per : hi;
  const bool aligned = (reinterpret_cast<uintptr_t>(row + lo) & 15) == 0;

  // Pass 1: local histogram of the slice.
  for (int i = tid; i < kBins; i += kSelThreads) hist[i] = 0;
  if (tid < 2) s_cnt[tid] = 0;
  __syncthreads();
  for (int64_t t0 = s0; t0 < s1; t0 += kSelTile) {
    uint32_t key[kItems];
    int64_t i0 = t0 + int64_t(tid) * kItems;
    load_keys(row, i0, s1, aligned, key);
#pragma unroll
    for (int c = 0; c < kItems; c++)
      if (i0 + c < s1) atomicAdd(&hist[key[c] >> 20], 1);
  }
  cluster.sync();
  // The cluster's histogram in block 0's candidate area: each block sums a slice of the bins
  // over the cluster (16-byte remote loads); block 0 finds the threshold bin for all.
  {
    int* total0 = reinterpret_cast<int*>(cluster.map_shared_rank(ckey, 0));
    constexpr int kSlice = kBins / kCl;
    for (int v = tid; v < kSlice / 4; v += kSelThreads) {
      int b = rank * kSlice + v * 4;
      int4 x = make_int4(0, 0, 0, 0);
#pragma unroll
      for (int q = 0; q < kCl; q++) {
        int4 y = *reinterpret_cast<const int4*>(cluster.map_shared_rank(hist, q) + b);
        x.x += y.x; x.y += y.y; x.z += y.z; x.w += y.w;
      }
      *reinterpret_cast<int4*>(total0 + b) = x;
    }
  }
  cluster.sync();
  __shared__ int s_bin[3];
  if (rank == 0) {
    const int* total = reinterpret_cast<const int*>(ckey);
    int bb, aa;
    find_bin(total, kBins, int(take), tmp, s_res, bb, aa);
    if (tid == 0) {
      s_bin[0] = bb;
      s_bin[1] = aa;
      s_bin[2] = total[bb];
    }
  }
  cluster.sync();
  const int* bin0 = cluster.map_shared_rank(s_bin, 0);
  const int b1 = bin0[0], a1 = bin0[1], neq = bin0[2];
  const int need1 = int(take) - a1;
  const bool in_smem = neq <= kCap;

  // Pass 2a: counts of this slice.
  {
    int cs = 0, cc = 0;
    for (int64_t t0 = s0; t0 < s1; t0 += kSelTile) {
      uint32_t key[kItems];
      int64_t i0 = t0 + int64_t(tid) * kItems;
      load_keys(row, i0, s1, aligned, key);
#pragma unroll
      for (int c = 0; c < kItems; c++) {
        if (i0 + c >= s1) continue;
        int d = int(key[c] >> 20);
        cs += d > b1;
        cc += d == b1;
      }
    }
    if (cs) atomicAdd(&s_cnt[0], cs);
    if (cc) atomicAdd(&s_cnt[1], cc);
  }
  cluster.sync();
  int nsure = 0, ncand = 0;
  for (int q = 0; q < rank; q++) {
    const int* c = cluster.map_shared_rank(s_cnt, q);
    nsure += c[0];
    ncand += c[1];
  }
  uint32_t* ckey0 = cluster.map_shared_rank(ckey, 0);
  int32_t* cidx0 = cluster.map_shared_rank(cidx, 0);
  // Pass 2b: ordered gather of the slice.
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
        ckey0[oc] = key[c];
        cidx0[oc] = int32_t(i0 + c);
        oc++;
      }
    }
    nsure += tot >> 16;
    ncand += tot & 0xffff;
  }
  cluster.sync();  // candidates in place; no block reads another's memory after this
  if (rank != 0) return;
  resolve_candidates(row, lo, hi, b1, need1, in_smem, neq, hist, ckey, cidx, tmp, s_res, sel + a1);
}

// lse of each (row, head) score row over its visible keys; +inf when no key has weight.
__global__ void row_lse_kernel(const SelectArgs a, int Hq, const float* scores, bool in_compact,
                               float* lse) {
  __shared__ float red[32];
  const int64_t rr = blockIdx.x / Hq;
  const int h = blockIdx.x % Hq;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
  const int64_t n = visible_keys(s, t, a.causal);
  const float* row = scores + ((in_compact ? rr : qrow) * Hq + h) * a.Smax;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, row[j]);
  for (int o = 16; o >= 1; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) red[warp] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int i = 0; i < nw; i++) mx = fmaxf(mx, red[i]);
  __syncthreads();
  float sum = 0.f;
  if (mx != -INFINITY)
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(row[j] - mx);
  for (int o = 16; o >= 1; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) red[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float tsum = 0.f;
    for (int i = 0; i < nw; i++) tsum += red[i];
    lse[rr * Hq + h] = mx == -INFINITY ? INFINITY : mx + logf(tsum);
  }
}

// rank[rr, kvh, j] = sum over the group's heads of exp(s - lse).
__global__ void group_rank_kernel(const SelectArgs a, int Hq, int G, const float* scores,
                                  bool in_compact, const float* lse, float* rank) {
  const int64_t rr = blockIdx.x / a.Hsel;
  const int kvh = blockIdx.x % a.Hsel;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
  const int64_t n = visible_keys(s, t, a.causal);
  const int64_t j = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const float* sr = scores + ((in_compact ? rr : qrow) * Hq + int64_t(kvh) * G) * a.Smax;
  float x = 0.f;
  for (int g = 0; g < G; g++) {
    float l = lse[rr * Hq + kvh * G + g];
    if (l < INFINITY && l > -INFINITY) x += expf(sr[int64_t(g) * a.Smax + j] - l);
  }
  rank[(rr * a.Hsel + kvh) * a.Smax + j] = x;
}

SelectArgs make_args(const AttnParams& p, const SeqTable& st, int64_t r0, int Hsel) {
  SelectArgs a;
  a.seqs = st.d;
  a.nseq = st.n;
  a.r0 = r0;
  a.Hsel = Hsel;
  a.Smax = p.Smax;
  a.Tq = p.Tq;
  a.causal = p.causal;
  a.in_compact = false;
  a.in = nullptr;
  a.k = 0;
  a.ratio = 0;
  a.min_k = a.sink = a.window = 0;
  a.out = nullptr;
  a.K = 0;
  return a;
}

void group_rank(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                const float* scores, bool in_compact, float* rank) {
  int64_t rows = r1 - r0;
  if (rows <= 0 || p.Smax == 0) return;
  TOPK_CHECK((p.Smax + 255) / 256 < 65536, "topk_select: group ranking supports up to 2^24 keys");
  SelectArgs a = make_args(p, st, r0, p.Hkv);
  float* lse = static_cast<float*>(workspace(kWsLse, size_t(rows) * p.Hq * sizeof(float)));
  row_lse_kernel<<<unsigned(rows * p.Hq), 512, 0, stream()>>>(a, p.Hq, scores, in_compact, lse);
  TOPK_CUDA_LAUNCH();
  dim3 grid(unsigned(rows * p.Hkv), unsigned((p.Smax + 255) / 256));
  group_rank_kernel<<<grid, 256, 0, stream()>>>(a, p.Hq, p.group(), scores, in_compact, lse, rank);
  TOPK_CUDA_LAUNCH();
}

}  // namespace

void launch_group_rank(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                       const float* scores, float* rank) {
  group_rank(p, st, r0, r1, scores, true, rank);
}

void launch_select(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                   const float* in, bool in_compact, int Hsel, const SelectOpts& sel,
                   int32_t* out, int64_t K) {
  int64_t rows = r1 - r0;
  if (rows <= 0) return;
  static bool attr = false;
  if (!attr) {
    TOPK_CUDA(cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   int(kSelSmem)));
    attr = true;
  }
  SelectArgs a = make_args(p, st, r0, Hsel);
  a.in = in;
  a.in_compact = in_compact;
  a.k = sel.k;
  a.ratio = sel.ratio;
  a.min_k = sel.min_k;
  a.sink = sel.sink;
  a.window = sel.window;
  a.out = out;
  a.K = K;
  int64_t blocks = rows * Hsel;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_select: too many rows for one launch");
  if (blocks < num_sms() && p.Smax >= 4 * kSelTile && blocks < 65536) {
    static bool cattr = false;
    if (!cattr) {
      TOPK_CUDA(cudaFuncSetAttribute(select_cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     int(kSelSmem)));
      cattr = true;
    }
    select_cluster_kernel<<<dim3(kCl, unsigned(blocks)), kSelThreads, kSelSmem, stream()>>>(a);
  } else {
    select_kernel<<<unsigned(blocks), kSelThreads, kSelSmem, stream()>>>(a);
  }
  TOPK_CUDA_LAUNCH();
}

void topk_select(const SelectParams& sp) {
  const AttnParams& p = sp.a;
  SeqTable st = upload_seqs(p);
  int G = p.Hq / sp.Hsel;
  if (!(sp.sel.share_group && G > 1)) {
    launch_select(p, st, 0, st.rows, sp.scores, false, sp.Hsel, sp.sel, sp.out, sp.K);
    return;
  }
  // Group sharing: rank rows in row ranges of at most ~1 GiB.
  int64_t per_row = int64_t(sp.Hsel) * p.Smax * 4;
  int64_t step = std::max<int64_t>(1, (int64_t(1) << 30) / std::max<int64_t>(1, per_row));
  for (int64_t r0 = 0; r0 < st.rows; r0 += step) {
    int64_t r1 = std::min(st.rows, r0 + step);
    float* rank = static_cast<float*>(workspace(kWsRank, size_t((r1 - r0) * per_row)));
    group_rank(p, st, r0, r1, sp.scores, false, rank);
    launch_select(p, st, r0, r1, rank, true, sp.Hsel, sp.sel, sp.out, sp.K);
  }
}

}  // namespace topk::cuda
