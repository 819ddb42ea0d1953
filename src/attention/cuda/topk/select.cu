// Exact top-k selection over rank rows (scores, or group probability sums) on CUDA: one block
// per (row, selection head) running select_row_block (topk/select_row.cuh), or for few long rows a
// cluster of blocks that share the histograms. Forced sink/window keys are written directly.
// The order of the indices in a row is unspecified. Also the group ranking (sum of softmax
// probabilities).
#include <cooperative_groups.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/topk/select_row.cuh"

namespace topk::cuda {

namespace {

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

// One (row, selection head) of a select launch: its rank row, its index row and its split
// into forced and competing keys. The forced keys and the -1 padding are written by the
// caller (write_forced).
struct SelRow {
  const float* row;
  int32_t* orow;
  int64_t n;
  RowSel rs;
};
__device__ __forceinline__ SelRow sel_row(const SelectArgs& a, int64_t rr, int hs) {
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  SelRow r;
  r.row = a.in + ((a.in_compact ? rr : qrow) * a.Hsel + hs) * a.Smax;
  r.orow = a.out + (qrow * a.Hsel + hs) * a.K;
  r.n = n;
  r.rs = row_sel(a.k, a.ratio, a.min_k, a.sink, a.window, n);
  return r;
}

// The row's sink and window keys, the -1 padding past the selection, and every competing key
// when all are taken; by the threads of one block.
__device__ __forceinline__ void write_forced(const SelRow& r, int64_t K) {
  const int64_t lo = r.rs.lo, hi = r.rs.hi, forced = r.rs.forced, take = r.rs.take;
  for (int64_t i = threadIdx.x; i < lo; i += kSelThreads) r.orow[i] = int32_t(i);
  for (int64_t i = threadIdx.x; i < r.n - hi; i += kSelThreads) r.orow[lo + i] = int32_t(hi + i);
  for (int64_t i = take + forced + threadIdx.x; i < K; i += kSelThreads) r.orow[i] = -1;
  if (take == r.rs.m)
    for (int64_t i = threadIdx.x; i < take; i += kSelThreads) r.orow[forced + i] = int32_t(lo + i);
}

__global__ void __launch_bounds__(kSelThreads, 2) select_kernel(const SelectArgs a) {
  extern __shared__ int smem[];
  __shared__ int tmp[33];
  __shared__ int s_res[2];

  const SelRow r = sel_row(a, blockIdx.x / a.Hsel, int(blockIdx.x % a.Hsel));
  write_forced(r, a.K);
  if (r.rs.take == 0 || r.rs.take == r.rs.m) return;
  if (r.rs.m >= kSampledMin && r.rs.take <= kSampledTake)
    select_row_sampled(r.row, r.rs.lo, r.rs.hi, r.rs.take, smem, tmp, s_res, r.orow + r.rs.forced);
  else
    select_row_block_call(r.row, r.rs.lo, r.rs.hi, r.rs.take, smem, tmp, s_res, r.orow + r.rs.forced);
}

// Few long rows (decode at small batch): a cluster of kCl blocks per row (blocks
// [c kCl, (c + 1) kCl) of the grid, cluster size set at launch). Each block histograms a slice;
// the cluster merges the histograms through distributed shared memory; each block gathers its
// slice (selected keys straight to the output, candidates in index order into block 0's shared
// memory); block 0 resolves the candidates.
template <int kCl>
__global__ void __launch_bounds__(kSelThreads, 2) select_cluster_kernel(const SelectArgs a) {
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
  const int64_t pair = blockIdx.x / kCl;  // (row, selection head)
  const SelRow r = sel_row(a, pair / a.Hsel, int(pair % a.Hsel));
  const float* row = r.row;
  const int64_t lo = r.rs.lo, hi = r.rs.hi, m = r.rs.m, take = r.rs.take;
  int32_t* sel = r.orow + r.rs.forced;
  if (rank == 0) write_forced(r, a.K);
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
#pragma unroll 4  // 4 remote loads in flight: all 16 of a 16-block cluster spill at 64 registers
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
  ordered_gather(row, s0, s1, aligned, b1, in_smem, nsure, ncand, tmp, sel, ckey0, cidx0);
  cluster.sync();  // candidates in place; no block reads another's memory after this
  if (rank != 0) return;
  resolve_candidates(row, lo, hi, b1, need1, in_smem, neq, hist, ckey, cidx, tmp, s_res, sel + a1);
}

// (m, s) with s = sum exp(x - m) over the keys seen, m their maximum: the running pair of an
// online softmax sum; -inf keys add nothing.
__device__ __forceinline__ void lse_add(float& m, float& s, float x) {
  if (x == -INFINITY) return;
  if (x > m) {
    s = s * expf(m - x) + 1.f;  // 0 * 0 + 1 for the first key (m = -inf)
    m = x;
  } else {
    s += expf(x - m);
  }
}

__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // neither has a key
  s = s * expf(m - M) + s2 * expf(m2 - M);
  m = M;
}

// The group ranking of one (row, KV head) a block: rank[j] = sum over the group's G heads of
// exp(s_g[j] - lse_g), lse_g over the row's visible keys (+inf when no key has weight: that head
// adds nothing). One kernel for both passes so that the second read of the G score rows follows
// the first within one block and can find them in L2 (two blocks of 1024 threads an SM keep 264
// (row, KV head) units in flight: 17 MB of score rows at 4K keys); the hit rate has not been
// measured, and at 8K the ranking's time is near that of two reads from memory. Keys go four at
// a time (float4) where the score rows' stride allows it.
constexpr int kRankThreads = 1024;
__host__ __device__ inline int rank_warps_per_head(int G) { return G <= kRankThreads / 32 ? kRankThreads / 32 / G : 1; }
template <bool VEC>
__global__ void __launch_bounds__(kRankThreads) group_rank_kernel(const SelectArgs a, int Hq, int G,
                                                                  const float* scores, bool in_compact,
                                                                  float* rank) {
  // Pass 1 reads the G rows at once: each head's row is split among wpg warps (a warp takes a
  // head, or several, when G > 32), and the partial (max, sum) pairs meet in shared memory.
  extern __shared__ float rank_smem[];
  const int wpg = rank_warps_per_head(G), nslots = G * wpg;
  float *s_m = rank_smem, *s_s = rank_smem + nslots, *s_lse = rank_smem + 2 * nslots;
  const int64_t rr = blockIdx.x / a.Hsel;
  const int kvh = int(blockIdx.x % a.Hsel);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const auto [s, t, qrow, n] = query_row(a.seqs, a.nseq, a.r0 + rr, a.Tq, a.causal);
  const float* sr = scores + ((in_compact ? rr : qrow) * Hq + int64_t(kvh) * G) * a.Smax;
  float* out = rank + (rr * a.Hsel + kvh) * a.Smax;
  const int64_t nv = VEC ? n / 4 : 0;  // float4 groups; keys from 4 nv on go one at a time
  for (int slot = warp; slot < nslots; slot += kRankThreads / 32) {
    const float* row = sr + int64_t(slot / wpg) * a.Smax;
    const int64_t stride = 32 * wpg;
    float m = -INFINITY, sum = 0.f;
    int64_t i = (slot % wpg) * 32 + lane;
    for (; i + stride < nv; i += 2 * stride) {  // two float4 loads in flight
      const float4 x = reinterpret_cast<const float4*>(row)[i];
      const float4 y = reinterpret_cast<const float4*>(row)[i + stride];
      lse_add(m, sum, x.x), lse_add(m, sum, x.y), lse_add(m, sum, x.z), lse_add(m, sum, x.w);
      lse_add(m, sum, y.x), lse_add(m, sum, y.y), lse_add(m, sum, y.z), lse_add(m, sum, y.w);
    }
    if (i < nv) {
      const float4 x = reinterpret_cast<const float4*>(row)[i];
      lse_add(m, sum, x.x), lse_add(m, sum, x.y), lse_add(m, sum, x.z), lse_add(m, sum, x.w);
    }
    for (int64_t j = 4 * nv + (slot % wpg) * 32 + lane; j < n; j += stride) lse_add(m, sum, row[j]);
    for (int o = 16; o >= 1; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, sum, o);
      lse_merge(m, sum, m2, s2);
    }
    if (lane == 0) s_m[slot] = m, s_s[slot] = sum;
  }
  __syncthreads();
  for (int g = tid; g < G; g += kRankThreads) {
    float m = -INFINITY, sum = 0.f;
    for (int q = g * wpg; q < (g + 1) * wpg; q++) lse_merge(m, sum, s_m[q], s_s[q]);
    s_lse[g] = m == -INFINITY ? INFINITY : m + logf(sum);
  }
  __syncthreads();
  // The sum over heads in head order, as the reference does.
  auto term = [&](int g, float x) {
    const float l = s_lse[g];
    return l < INFINITY && l > -INFINITY ? expf(x - l) : 0.f;
  };
  for (int64_t i = tid; i < nv; i += kRankThreads) {
    float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int g = 0; g < G; g++) {
      const float4 x = reinterpret_cast<const float4*>(sr + int64_t(g) * a.Smax)[i];
      r.x += term(g, x.x), r.y += term(g, x.y), r.z += term(g, x.z), r.w += term(g, x.w);
    }
    reinterpret_cast<float4*>(out)[i] = r;
  }
  for (int64_t j = 4 * nv + tid; j < n; j += kRankThreads) {
    float r = 0.f;
    for (int g = 0; g < G; g++) r += term(g, sr[int64_t(g) * a.Smax + j]);
    out[j] = r;
  }
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
  TOPK_CHECK(rows * p.Hkv < (int64_t(1) << 31), "topk_select: too many (row, KV head) pairs for one launch");
  SelectArgs a = make_args(p, st, r0, p.Hkv);
  // Score rows start at multiples of Smax floats from a 256-byte aligned workspace or caller
  // buffer; float4 loads need Smax a multiple of 4 and a 16-byte aligned base.
  const bool vec = p.Smax % 4 == 0 && reinterpret_cast<uintptr_t>(scores) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(rank) % 16 == 0;
  const unsigned blocks = unsigned(rows * p.Hkv);
  const int G = p.group();
  const size_t smem = size_t(2 * G * rank_warps_per_head(G) + G) * sizeof(float);
  TOPK_CHECK(smem <= 48 * 1024, "topk_select: group-shared ranking supports up to 4096 query heads per KV head");
  if (vec)
    group_rank_kernel<true><<<blocks, kRankThreads, smem, stream()>>>(a, p.Hq, p.group(), scores, in_compact, rank);
  else
    group_rank_kernel<false><<<blocks, kRankThreads, smem, stream()>>>(a, p.Hq, p.group(), scores, in_compact, rank);
  TOPK_CUDA_LAUNCH();
}

}  // namespace

void launch_group_rank(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                       const float* scores, float* rank) {
  group_rank(p, st, r0, r1, scores, true, rank);
}

// Few long rows take a cluster of blocks each: the largest that keeps the clusters within one
// wave (2 blocks an SM) and gives each block at least kClusterMinKeys of the row, else 4. Each
// cluster merge (4 syncs, remote histogram reads) costs the same at any slice length, so thin
// slices lose: on the H100, 32 rows of 32K took 27.6 us at 4 blocks a row and 36.2 at 8; 8 rows
// of 128K 27.0 us at 8 and 29.3 at 16. TOPK_CUDA_SELECT=clusters or =blocks forces one layout
// (a block per row reads its row once through the sampled select: measure both at decode's
// batch sizes before changing the rule), TOPK_CUDA_SELECT_CLUSTER=4, 8 or 16 the cluster size.
// Returns the cluster size, or 0 for a block per row.
constexpr int64_t kClusterMinKeys = 16384;

static int select_cluster_size(int64_t blocks, int64_t Smax) {
  const bool fits = blocks < 65536 && Smax >= 4 * kSelTile;
  bool clusters = fits && blocks < num_sms();
  if (const char* e = std::getenv("TOPK_CUDA_SELECT"); e && *e) {
    if (!std::strcmp(e, "clusters")) clusters = fits;
    else if (!std::strcmp(e, "blocks")) clusters = false;
    else throw Error(detail::format_error("TOPK_CUDA_SELECT=%s: expected clusters or blocks", e));
  }
  if (!clusters) return 0;
  if (const char* e = std::getenv("TOPK_CUDA_SELECT_CLUSTER"); e && *e) {
    if (!std::strcmp(e, "4")) return 4;
    if (!std::strcmp(e, "8")) return 8;
    if (!std::strcmp(e, "16")) return 16;
    throw Error(detail::format_error("TOPK_CUDA_SELECT_CLUSTER=%s: expected 4, 8 or 16", e));
  }
  const int64_t slots = 2 * int64_t(num_sms());
  for (int cl : {16, 8})
    if (blocks * cl <= slots && Smax >= int64_t(cl) * kClusterMinKeys) return cl;
  return 4;
}

// Clusters of 16 are past the portable 8: allowed per kernel, and only where the GPU can place
// one with this kernel's shared memory (else 8).
static int usable_cluster_size(int cl) {
  if (cl != 16) return cl;
  static int ok = -1;
  if (ok < 0) {
    ok = 0;
    if (cudaFuncSetAttribute(select_cluster_kernel<16>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) ==
        cudaSuccess) {
      allow_smem(select_cluster_kernel<16>, kSelSmem);
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = dim3(16);
      cfg.blockDim = dim3(kSelThreads);
      cfg.dynamicSmemBytes = kSelSmem;
      cudaLaunchAttribute attr;
      attr.id = cudaLaunchAttributeClusterDimension;
      attr.val.clusterDim.x = 16;
      attr.val.clusterDim.y = 1;
      attr.val.clusterDim.z = 1;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      int n = 0;
      if (cudaOccupancyMaxActiveClusters(&n, select_cluster_kernel<16>, &cfg) == cudaSuccess && n > 0) ok = 1;
    }
    cudaGetLastError();  // a refusal above is an answer, not an error to report later
  }
  return ok ? 16 : 8;
}

void launch_select(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                   const float* in, bool in_compact, int Hsel, const SelectOpts& sel,
                   int32_t* out, int64_t K) {
  int64_t rows = r1 - r0;
  if (rows <= 0) return;
  allow_smem(select_kernel, kSelSmem);
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
  switch (usable_cluster_size(select_cluster_size(blocks, p.Smax))) {
    case 0:
      select_kernel<<<unsigned(blocks), kSelThreads, kSelSmem, stream()>>>(a);
      TOPK_CUDA_LAUNCH();
      break;
    case 4:
      allow_smem(select_cluster_kernel<4>, kSelSmem);
      launch_ex(select_cluster_kernel<4>, blocks * 4, kSelThreads, kSelSmem, 4, false, a);
      break;
    case 8:
      allow_smem(select_cluster_kernel<8>, kSelSmem);
      launch_ex(select_cluster_kernel<8>, blocks * 8, kSelThreads, kSelSmem, 8, false, a);
      break;
    default:
      launch_ex(select_cluster_kernel<16>, blocks * 16, kSelThreads, kSelSmem, 16, false, a);
  }
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
