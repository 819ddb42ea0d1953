// Selection and attention of the general path of top-k attention (per-head selection, rows of
// at most kRowSlice * kMaxCluster keys), after the score pass has written every row's scores:
// a cluster of C blocks per (row, query head), each holding a slice of the row in registers
// (kPer consecutive keys per thread).
//   select  Radix digits (12, 12, 8 bits) of the exact threshold key T. Each block
//           histograms its slice and pushes the histogram's 64 chunk sums into every block;
//           after one cluster barrier every block finds the same chunk from them, reads that
//           chunk's bins from every block, and so the same digit, with each block's count of
//           keys above it. The last digit is skipped when the second one's bin holds exactly
//           the keys still needed (without ties, one key). Keys equal to T are kept from the
//           lowest index, across the slices in rank order.
//   write   Every block knows every slice's kept count, so each writes its slice's selection
//           (sink, chosen and window keys) in index order at its offset in the row without
//           waiting: indices to the output, and (index, score) into the shared memory of the
//           block that gathers that part of the selection.
//   attend  The selection is cut into C equal parts; each block weights its part's V rows by
//           exp(s - max), and the first block sums the partials in rank order into o and lse.
// At small batch this replaces three latency-bound launches (select, split-KV attention over
// the indices, combine) with one whose steps all stay on chip but the score and V reads.
#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/reduce.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/topk/select_row.cuh"
#include "attention/cuda/topk/stored_rows.cuh"

namespace topk::cuda {

namespace {

namespace cg = cooperative_groups;

constexpr int kRowSlice = 8192;                // keys per block
constexpr int kMaxCluster = 8;                 // the portable cluster size
constexpr int kPer = kRowSlice / kSelThreads;  // consecutive keys per thread
static_assert(kPer <= 32, "a thread's keys fit one 32-bit mask");
// Dynamic shared memory: three histograms that the other blocks read; this block's part of
// the selection (indices, scores), written by every block of the cluster. The merged
// histogram lives in the scores' space until the selection arrives, the V partials in the
// first two histograms once no block reads them.
constexpr size_t kRSSmem = size_t(2 * kBins + 256 + 2 * kRowSlice) * 4;
static_assert(kBins <= kRowSlice && kSelThreads * 8 <= 2 * kBins, "region sizes");

// The 64 chunk sums of this block's histogram of nbins (4096 or 256) bins, after its
// atomics, pushed into chunks[rank][0..64) of every block of the cluster: the next cluster
// barrier makes them readable there without a remote round trip.
__device__ __forceinline__ void push_chunk_sums(cg::cluster_group& cluster, int C, int rank,
                                                const int* hist, int nbins, int* chunks) {
  const int tid = threadIdx.x;
  int v = 0, c = -1;
  if (nbins == kBins) {  // 64 bins per chunk: 8 threads of 8 bins each
    static_assert(kBins == kSelThreads * 8, "8 bins per thread");
    const int4 x = reinterpret_cast<const int4*>(hist)[2 * tid];
    const int4 y = reinterpret_cast<const int4*>(hist)[2 * tid + 1];
    v = x.x + x.y + x.z + x.w + y.x + y.y + y.z + y.w;
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    v += __shfl_xor_sync(0xffffffffu, v, 4);
    if ((tid & 7) == 0) c = tid >> 3;
  } else if (tid < 64) {  // 4 bins per chunk
    const int4 x = reinterpret_cast<const int4*>(hist)[tid];
    v = x.x + x.y + x.z + x.w;
    c = tid;
  }
  if (c >= 0)
    for (int q = 0; q < C; q++) cluster.map_shared_rank(chunks, q)[rank * 64 + c] = v;
}

// One warp, over the counts v[q * 64 + i] of C blocks (i ascending with the key): the index
// holding the need-th largest key (1 <= need <= their sum) and the count above it.
__device__ __forceinline__ void warp_find(const int* v, int C, int need, int& idx, int& above) {
  const int lane = threadIdx.x & 31;
  int a = 0, b = 0;  // positions lane and 32 + lane from the top: indices 63 - lane, 31 - lane
#pragma unroll
  for (int q = 0; q < kMaxCluster; q++)
    if (q < C) {
      a += v[q * 64 + 63 - lane];
      b += v[q * 64 + 31 - lane];
    }
  int ia = a, ib = b;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int ya = __shfl_up_sync(0xffffffffu, ia, o), yb = __shfl_up_sync(0xffffffffu, ib, o);
    if (lane >= o) ia += ya, ib += yb;
  }
  ib += __shfl_sync(0xffffffffu, ia, 31);
  const unsigned ma = __ballot_sync(0xffffffffu, ia >= need);
  const unsigned mb = __ballot_sync(0xffffffffu, ib >= need);
  const int l = ma ? __ffs(ma) - 1 : __ffs(mb) - 1;
  idx = ma ? 63 - l : 31 - l;
  above = ma ? __shfl_sync(0xffffffffu, ia - a, l) : __shfl_sync(0xffffffffu, ib - b, l);
}

// One warp: cnt[q] += the sum of v[q * 64 + i] over i > sel, for every block q < C (lanes
// 4q .. 4q + 3 add 16 counts each).
__device__ __forceinline__ void add_above(const int* v, int C, int sel, int* cnt) {
  static_assert(kMaxCluster * 4 == 32, "four lanes per block");
  const int lane = threadIdx.x & 31, q = lane >> 2, i0 = (lane & 3) * 16;
  int x = 0;
  if (q < C) {
#pragma unroll
    for (int i = 0; i < 16; i++) x += i0 + i > sel ? v[q * 64 + i0 + i] : 0;
  }
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  if ((lane & 3) == 0 && q < C) cnt[q] += x;
}

// Warp 0 of every block: the bin of the cluster's summed histogram (each block's hist of
// nbins = 64 * bpc bins, whose chunk sums every block pushed into chunks) that holds the
// need-th largest key: the chunk from the pushed sums, then the bin from the chunk's bins
// read from every block. Adds to cnt_above[q] block q's keys in higher bins and sets
// cnt_in[q] to its keys in the bin. buf: kMaxCluster * 64 ints. Every lane gets bin, above.
// Not inlined: its three calls share one copy of the code.
__device__ __noinline__ void cluster_find_bin(cg::cluster_group& cluster, int C, const int* hist,
                                              const int* chunks, int nbins, int need, int* buf,
                                              int* cnt_above, int* cnt_in, int& bin, int& above) {
  const int lane = threadIdx.x & 31, bpc = nbins / 64;
  int c, a1;
  warp_find(chunks, C, need, c, a1);
  add_above(chunks, C, c, cnt_above);
  const int c0 = c * bpc;
  for (int q0 = 0; q0 < C; q0 += 4) {
    int v[8];
#pragma unroll
    for (int j = 0; j < 4; j++) {  // all loads in flight before any is used
      const int* r = cluster.map_shared_rank(hist, q0 + j < C ? q0 + j : 0);
      v[2 * j] = q0 + j < C && lane < bpc ? r[c0 + lane] : 0;
      v[2 * j + 1] = q0 + j < C && 32 + lane < bpc ? r[c0 + 32 + lane] : 0;
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
      buf[(q0 + j) * 64 + lane] = v[2 * j];
      buf[(q0 + j) * 64 + 32 + lane] = v[2 * j + 1];
    }
  }
  __syncwarp();
  int o, a2;
  warp_find(buf, C, need - a1, o, a2);
  add_above(buf, C, o, cnt_above);
  if (lane < C) cnt_in[lane] = buf[lane * 64 + o];
  __syncwarp();
  bin = c0 + o;
  above = a1 + a2;
}

// Lane 0 of warp 0: the place in the row of this block's first kept key, given per block q
// its competing keys above T (above[q]) and equal to T (in[q]): the slices before it keep
// their forced keys, those above T, and of those equal to T the first `left` in index
// order. left becomes what this slice may keep of its own.
__device__ int slice_place(int rank, int per, int n, int lo, int hi, const int* above,
                           const int* in, int& left) {
  int place = 0;
  for (int q = 0; q < rank; q++) {
    const int q0 = min(q * per, n), q1 = min(q0 + per, n);
    const int nc = max(0, min(q1, hi) - max(q0, lo));
    const int eq = min(left, in[q]);
    place += (q1 - q0 - nc) + above[q] + eq;
    left -= eq;
  }
  return place;
}

// U: V rows in flight per thread (8 at one block per SM, 4 at two).
template <int D, int U>
__global__ void __launch_bounds__(kSelThreads, U >= 8 ? 1 : 2) select_attend_rows_kernel(const StoredRowsArgs a) {
  constexpr int TPR = D / 8, SLOTS = kSelThreads / TPR;
  extern __shared__ int smem[];
  int* h1 = smem;
  int* h2 = h1 + kBins;
  int* h3 = h2 + kBins;
  int32_t* pidx = h3 + 256;                                  // [kRowSlice]
  float* psc = reinterpret_cast<float*>(pidx + kRowSlice);  // [kRowSlice]
  __shared__ int tmp[33];
  __shared__ float s_red[kSelThreads / 32];
  __shared__ int s_chunks[2][kMaxCluster * 64];  // every block's chunk sums: digits 1 and 3, digit 2
  __shared__ uint32_t s_kmax[2];              // largest forced and competing key of the slice
  __shared__ int s_buf[kMaxCluster * 64];     // warp 0: counts read from the cluster
  __shared__ int s_above[kMaxCluster];        // per block: competing keys above T
  __shared__ int s_in[kMaxCluster];           // per block: competing keys equal to T (last digit)
  __shared__ int s_res[8];  // a digit's results; M's key; T, this block's place, its quota
  __shared__ float s_part[kMaxCluster][D];  // first block: every block's V partial sum
  __shared__ float s_sums[kMaxCluster];     // first block: every block's weight sum
  static_assert(D <= kSelThreads, "a thread per dim sums the partials");
  static_assert(kRSSmem + sizeof(tmp) + sizeof(s_red) + sizeof(s_chunks) + sizeof(s_kmax) +
                        sizeof(s_buf) + sizeof(s_above) + sizeof(s_in) + sizeof(s_res) +
                        sizeof(s_part) + sizeof(s_sums) <= kMaxBlockSmem,
                "the block's shared memory fits");

  cg::cluster_group cluster = cg::this_cluster();
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  const int C = a.C, rank = int(cluster.block_rank());
  // 32-bit: the launch checks that the blocks fit in an int (64-bit division is slow).
  const int pair = int(blockIdx.x) / C;
  const int64_t rr = pair / a.Hq;
  const int h = pair % a.Hq, kvh = h / a.G;
  const auto [s, t, qrow, n64] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  // Positions fit in int: rows have at most kRowSlice * kMaxCluster keys.
  const int n = int(n64);
  const RowSel rs = row_sel(a.sel.k, a.sel.ratio, a.sel.min_k, a.sel.sink, a.sel.window, n);
  const int lo = int(rs.lo), hi = int(rs.hi), take = int(rs.take), m = int(rs.m);
  const int nsel = int(rs.forced) + take;
  int32_t* orow = a.out + (qrow * a.Hq + h) * a.K;
  const float* srow = a.scores + (rr * a.Hq + h) * a.Smax;
  // This block's slice [s0, s1) in runs of kPer keys per thread, from e0.
  const int per = ((n + C - 1) / C + kPer - 1) / kPer * kPer;
  const int s0 = min(rank * per, n), s1 = min(s0 + per, n);
  const int e0 = s0 + tid * kPer;
  // The selection's part that this block gathers: [p0, p0 + np).
  const int part = (nsel + C - 1) / C;
  const int p0 = min(rank * part, nsel), np = min(p0 + part, nsel) - p0;

  // A block may write another's shared memory only once that one runs: arrive here, and wait
  // before the first push (by then every block has long arrived).
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
  for (int i = tid; i < (2 * kBins + 256) / 4; i += kSelThreads)
    reinterpret_cast<int4*>(h1)[i] = make_int4(0, 0, 0, 0);
  if (tid < kMaxCluster) s_above[tid] = 0;
  if (tid < 2) s_kmax[tid] = 0u;
  // The scores are the score pass's output: wait for it (this kernel is its programmatic
  // dependent, so its blocks may start early), then load the run, all loads in flight.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  static_assert(kPer == kItems, "a thread's run is one load_keys group");
  uint32_t key[kPer];
  load_keys(srow, e0, s1, (reinterpret_cast<uintptr_t>(srow) & 15) == 0, key);
  // Which keys of the run compete, and which are forced (sink or window), as bit masks.
  uint32_t comp = 0, forced = 0;
#pragma unroll
  for (int j = 0; j < kPer; j++) {
    const int i = e0 + j;
    if (i < s1) {
      if (i >= lo && i < hi) comp |= 1u << j;
      else forced |= 1u << j;
    }
  }
  __syncthreads();  // the histograms are zero
  {
    // The largest forced and competing keys (key 0, a NaN's, stands for none): the scale of
    // the softmax over the selection, known before the selection is.
    uint32_t mf = 0u, mc = 0u;
#pragma unroll
    for (int j = 0; j < kPer; j++) {
      if (forced >> j & 1) mf = max(mf, key[j]);
      if (comp >> j & 1) mc = max(mc, key[j]);
    }
    mf = __reduce_max_sync(0xffffffffu, mf);
    mc = __reduce_max_sync(0xffffffffu, mc);
    if ((tid & 31) == 0) {
      if (mf) atomicMax(&s_kmax[0], mf);
      if (mc) atomicMax(&s_kmax[1], mc);
    }
  }

  // The threshold key T, and how many keys equal to T this slice may keep (quota; the lowest
  // indices first). Every block finds the same digits from the cluster's histograms, and
  // with them every block's count of kept keys, so it knows its place in the row without
  // waiting for the blocks before it.
  const bool general = take > 0 && take < m;
  if (general) {
    // Digit 1: bits 31..20.
#pragma unroll
    for (int j = 0; j < kPer; j++)
      if (comp >> j & 1) atomicAdd(&h1[key[j] >> 20], 1);
    __syncthreads();
  }
  asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
  if (general) push_chunk_sums(cluster, C, rank, h1, kBins, s_chunks[0]);
  cluster.sync();  // the histograms of digit 1 and the largest keys are complete
  if (tid < 32) {
    // M's key, read here while the cluster's blocks are in step.
    uint32_t f = 0u, c = 0u;
    if (tid < C) {
      const uint32_t* r = cluster.map_shared_rank(s_kmax, tid);
      f = r[0];
      c = r[1];
    }
    f = __reduce_max_sync(0xffffffffu, f);
    c = __reduce_max_sync(0xffffffffu, c);
    if (tid == 0) s_res[3] = int(take > 0 ? max(f, c) : f);
  }
  if (general) {
    int b1, a1;
    if (tid < 32) cluster_find_bin(cluster, C, h1, s_chunks[0], kBins, take, s_buf, s_above, s_in, b1, a1);
    if (tid == 0) s_res[0] = b1, s_res[1] = a1;
    __syncthreads();
    b1 = s_res[0];
    const int need1 = take - s_res[1];
    // Digit 2: bits 19..8 of the keys in bin b1.
#pragma unroll
    for (int j = 0; j < kPer; j++)
      if ((comp >> j & 1) && int(key[j] >> 20) == b1) atomicAdd(&h2[(key[j] >> 8) & 0xfff], 1);
    __syncthreads();
    push_chunk_sums(cluster, C, rank, h2, kBins, s_chunks[1]);
    cluster.sync();
    int b2, a2;
    if (tid < 32) cluster_find_bin(cluster, C, h2, s_chunks[1], kBins, need1, s_buf, s_above, s_in, b2, a2);
    if (tid == 0) {
      int n2 = 0;
      for (int q = 0; q < C; q++) n2 += s_in[q];
      s_res[0] = b2;
      s_res[1] = a2;
      s_res[2] = n2;
    }
    __syncthreads();
    b2 = s_res[0];
    const int need2 = need1 - s_res[1];
    const uint32_t pre2 = (uint32_t(b1) << 12) | uint32_t(b2);
    if (need2 == s_res[2] && pre2 != 0) {
      // The bin holds exactly the keys still needed (without ties at the threshold, one
      // key): all of it is kept, and the last digit is not needed. T lies just below it.
      if (tid == 0) {
        for (int q = 0; q < C; q++) s_above[q] += s_in[q];
        int left = 0;
        s_res[5] = slice_place(rank, per, n, lo, hi, s_above, s_in, left);
        s_res[4] = int((pre2 << 8) - 1u);
        s_res[6] = 0;
      }
    } else {
      // Digit 3: bits 7..0.
#pragma unroll
      for (int j = 0; j < kPer; j++)
        if ((comp >> j & 1) && (key[j] >> 8) == pre2) atomicAdd(&h3[key[j] & 0xff], 1);
      __syncthreads();
      push_chunk_sums(cluster, C, rank, h3, 256, s_chunks[0]);
      cluster.sync();
      if (tid < 32) {
        int b3, a3;
        cluster_find_bin(cluster, C, h3, s_chunks[0], 256, need2, s_buf, s_above, s_in, b3, a3);
        if (tid == 0) {
          // need2 - a3 >= 1 keys equal to T are kept, from the lowest index.
          int left = need2 - a3;
          s_res[5] = slice_place(rank, per, n, lo, hi, s_above, s_in, left);
          s_res[4] = int((pre2 << 8) | uint32_t(b3));
          s_res[6] = left;
        }
      }
    }
  } else if (tid == 0) {
    // No competing key (take == 0) or every one (take == m) is kept: the places follow from
    // the slice bounds.
    int place = 0;
    for (int q = 0; q < rank; q++) {
      const int q0 = min(q * per, n), q1 = min(q0 + per, n);
      const int nc = max(0, min(q1, hi) - max(q0, lo));
      place += take == 0 ? q1 - q0 - nc : q1 - q0;
    }
    s_res[4] = take == 0 ? -1 : 0;  // T above every key, or at the lowest
    s_res[5] = place;
    s_res[6] = take == 0 ? 0 : 0x3fffffff;
  }
  __syncthreads();
  const uint32_t T = uint32_t(s_res[4]);
  const int base = s_res[5], q0 = max(0, s_res[6]);
  const uint32_t mkey = uint32_t(s_res[3]);
  const float M = mkey ? key_score(mkey) : -INFINITY;

  // Kept for sure (forced, or competing above T), and equal to T: the block prefix of their
  // counts gives each kept key its place.
  uint32_t sure = forced, eq = 0;
#pragma unroll
  for (int j = 0; j < kPer; j++) {
    if ((comp >> j & 1) && key[j] > T) sure |= 1u << j;
    if ((comp >> j & 1) && key[j] == T) eq |= 1u << j;
  }
  // The V rows of these keys start on their way to L2 now; the gather reads them after the
  // next cluster barrier.
  const int64_t vbase = int64_t(s.batch) * a.v.sb + int64_t(s.k_start) * a.v.st + int64_t(kvh) * a.v.sh;
  const int vrow_bytes = D * a.v.esize;
  for (uint32_t mset = sure | eq; mset; mset &= mset - 1) {
    const char* row = a.v.data + (vbase + int64_t(e0 + __ffs(mset) - 1) * a.v.st) * a.v.esize;
    for (int b = 0; b < vrow_bytes; b += 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(row + b));
  }
  int tot;
  const int pre = block_exclusive_scan((__popc(sure) << 16) | __popc(eq), tmp, &tot);

  // The run's selection in index order: a key's place is base plus the kept keys before it
  // in this slice (sure ones, and ties up to the quota). Each (index, score) goes to the
  // block whose part holds that place.
  const int sure0 = pre >> 16, eq0 = pre & 0xffff;
  for (uint32_t mset = sure | eq; mset; mset &= mset - 1) {
    const int j = __ffs(mset) - 1;
    const uint32_t below = (1u << j) - 1u;
    const int ns = sure0 + __popc(sure & below), ne = eq0 + __popc(eq & below);
    int pos;
    if (sure >> j & 1) pos = base + ns + min(ne, q0);
    else if (ne < q0) pos = base + ns + ne;
    else continue;
    orow[pos] = e0 + j;
    const int dst = pos / part;
    cluster.map_shared_rank(pidx, dst)[pos - dst * part] = e0 + j;
    uint32_t kj = key[0];  // key[j] without a dynamic index (which would put key in memory)
#pragma unroll
    for (int c = 1; c < kPer; c++) kj = c == j ? key[c] : kj;
    cluster.map_shared_rank(psc, dst)[pos - dst * part] = key_score(kj);
  }
  for (int64_t i = nsel + int64_t(rank) * kSelThreads + tid; i < a.K; i += int64_t(C) * kSelThreads)
    orow[i] = -1;
  cluster.sync();  // every part has arrived

  // Weights exp(s - M) of this block's part, in place.
  float sum = 0.f;
  for (int i = tid; i < np; i += kSelThreads) {
    const float w = M == -INFINITY ? 0.f : expf(psc[i] - M);
    psc[i] = w;
    sum += w;
  }
  sum = block_reduce(sum, false, s_red);  // publishes psc

  float acc[8];
#pragma unroll
  for (int e = 0; e < 8; e++) acc[e] = 0.f;
  if (a.vec_v && a.v.dt == kBF16) {
    for (int b0 = 0; b0 < np; b0 += SLOTS * U)
      gather_bf16<U>(a.v.data, vbase, a.v.st, dg, pidx, psc, b0 + slot, SLOTS, np, acc);
  } else {
    for (int b0 = 0; b0 < np; b0 += SLOTS * U)
      gather_rows<U>(a.v, vbase, dg, a.vec_v, b0 + slot, SLOTS, np, [&](int i) { return pidx[i]; },
                     [&](int i) { return psc[i]; }, acc);
  }
  // The block's partial sum over its slots in a fixed order: slots in shared memory, PARTS
  // runs of them summed by all threads, then the runs, sent to the first block.
  constexpr int PARTS = kSelThreads / D, RUN = SLOTS / PARTS;
  static_assert(SLOTS % PARTS == 0, "runs of slots");
  float* red = reinterpret_cast<float*>(h1);  // [SLOTS][D] over h1, h2
  float* runs = psc;                          // [PARTS][D]; the gather is done with psc
#pragma unroll
  for (int e = 0; e < 8; e++) red[slot * D + dg * 8 + e] = acc[e];
  __syncthreads();
  {
    const int d = tid % D, pt = tid / D;
    float x = 0.f;
#pragma unroll
    for (int sl = 0; sl < RUN; sl++) x += red[(pt * RUN + sl) * D + d];
    runs[pt * D + d] = x;
  }
  __syncthreads();
  if (tid < D) {
    float x = 0.f;
#pragma unroll
    for (int pt = 0; pt < PARTS; pt++) x += runs[pt * D + tid];
    cluster.map_shared_rank(&s_part[0][0], 0)[rank * D + tid] = x;
  }
  if (tid == 0) cluster.map_shared_rank(s_sums, 0)[rank] = sum;
  // After this barrier only the first block reads, and only its own shared memory.
  cluster.sync();
  if (rank == 0) {
    float L = 0.f;
    for (int q = 0; q < C; q++) L += s_sums[q];
    const bool empty = !(L > 0.f);
    const int64_t ooff = a.dst.offset(s.batch, s.q_start + t, h);
    if (tid < D) {
      float x = 0.f;
      for (int q = 0; q < C; q++) x += s_part[q][tid];
      store1(a.dst.o, a.dst.dt, ooff + tid, empty ? 0.f : x / L);
    }
    if (tid == 0) a.dst.lse[qrow * a.Hq + h] = empty ? INFINITY : M + logf(L);
  }
}

template <int D, int U>
void run_rows(const StoredRowsArgs& a, int64_t blocks) {
  launch_ex(select_attend_rows_kernel<D, U>, blocks, kSelThreads, kRSSmem, a.C, true, a);
}

// Clusters of C blocks of the U = 8 variant (one block per SM) that run at once. A GPC's SMs
// that do not make up a whole cluster stay idle, so this can be fewer than SMs / C.
template <int D>
int64_t max_clusters_u8(int C) {
  static int cache[kMaxCluster + 1] = {};
  if (cache[C] == 0) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(unsigned(C));
    cfg.blockDim = dim3(kSelThreads);
    cfg.dynamicSmemBytes = kRSSmem;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = unsigned(C);
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int n = 0;
    TOPK_CUDA(cudaOccupancyMaxActiveClusters(&n, select_attend_rows_kernel<D, 8>, &cfg));
    cache[C] = n > 0 ? n : -1;
  }
  return cache[C];
}

template <int D>
void set_smem_attrs() {
  allow_smem(select_attend_rows_kernel<D, 8>, kRSSmem);
  allow_smem(select_attend_rows_kernel<D, 4>, kRSSmem);
}

}  // namespace

bool select_attend_rows_fits(int64_t Smax) { return Smax <= int64_t(kRowSlice) * kMaxCluster; }

void launch_select_attend_rows(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                               const SelectOpts& sel, const float* scores, int32_t* indices,
                               int64_t K) {
  if (r1 <= r0) return;
  TOPK_CHECK(select_attend_rows_fits(p.Smax), "topk_attention_forward: rows too long for the fused select");
  StoredRowsArgs a = stored_rows_args(p, st, r0, r1, sel, scores, indices, K);
  // Slices of at most kRowSlice keys, and at least 2 blocks per pair for the V gather.
  a.C = int(std::max<int64_t>(2, (p.Smax + kRowSlice - 1) / kRowSlice));
  const int64_t pairs = a.pairs;
  TOPK_CHECK(pairs * a.C < (int64_t(1) << 31), "topk_attention_forward: too many rows for one launch");
  // One block per SM (8 V rows in flight per thread) while every cluster fits at once; two
  // per SM (4 rows in flight) otherwise, so that no cluster waits for a second wave.
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "topk_attention_forward",
      set_smem_attrs<kD>();
      if (pairs <= max_clusters_u8<kD>(a.C)) run_rows<kD, 8>(a, pairs * a.C);
      else run_rows<kD, 4>(a, pairs * a.C));
}

}  // namespace topk::cuda
