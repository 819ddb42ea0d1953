// Thresholds of the top-k decode's threshold path (threshold.h): for each (row, query head),
// score an evenly spaced sample of the competing keys and take the lower edge of the 16-bit
// key bin that holds the r-th largest sampled score, r = E * samples / m. About E keys of the
// row then reach it. Rows short enough for every key to be a candidate get threshold 0 (all
// keys pass); rows that select nothing get one no score reaches. Also zeroes the candidate
// counts that the filtering score pass appends to.
// The sample of an item (row, KV head, head slice) is split over a cluster of `parts` blocks
// so that its loads run in parallel; each block writes its sampled keys into the shared memory
// of the cluster's first block, which picks the thresholds.
#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/threshold.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxSamples = int(kThresholdMaxSamples);

struct SampleArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0;
  int Hq, Hkv, G, nslice;
  float scale;
  bool causal, vec;
  DRows q, k;
  SelectOpts sel;
  int64_t cap;
  int parts;
  uint32_t* thr;  // [rows, Hq]
  int* cnt;       // [rows, Hq]
  int* done;      // [items]
};

template <int D, int HB>
__global__ void __launch_bounds__(kThreads) sample_kernel(const SampleArgs a) {
  constexpr int TPR = D / 8;             // threads per key row
  constexpr int SLOTS = kThreads / TPR;  // key rows per step
  constexpr int U = 8;                   // key rows in flight per thread
  extern __shared__ uint32_t skey[];     // [HB][kMaxSamples]
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();

  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR, warp = tid / 32;
  const int64_t item = blockIdx.x / a.parts;
  const int part = int(cluster.block_rank());
  const int64_t rr = item / (a.Hkv * a.nslice);
  const int rest = int(item % (a.Hkv * a.nslice));
  const int kvh = rest / a.nslice, slice = rest % a.nslice;
  const int h0 = kvh * a.G + slice * HB;
  const int nh = min(HB, a.G - slice * HB);
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int64_t n = visible_keys(s, t, a.causal);
  const RowSel rs = row_sel(a.sel.k, a.sel.ratio, a.sel.min_k, a.sel.sink, a.sel.window, n);
  uint32_t* thr = a.thr + rr * a.Hq + h0;
  if (rs.take == 0 || rs.m <= a.cap) {  // the same for the whole cluster
    if (part == 0 && tid < nh) {
      a.cnt[rr * a.Hq + h0 + tid] = 0;
      thr[tid] = rs.take == 0 ? 0xffffffffu : 0u;
    }
    if (part == 0 && tid == 0) a.done[item] = 0;
    return;
  }
  const int64_t ns = threshold_samples(rs.take, rs.m);
  const int64_t e = threshold_target(rs.take, rs.m);
  const int64_t want = (e * ns + rs.m - 1) / rs.m;
  const int need = int(want < ns ? want : ns);
  uint32_t* skey0 = cluster.map_shared_rank(skey, 0);
  cluster.sync();  // the first block is running before anyone writes to its shared memory

  // This block's share of the sample: keys [i_lo, i_hi) of the ns sampled ones.
  const int64_t i_lo = part * ns / a.parts, i_hi = (part + 1) * ns / a.parts;
  float qv[HB][8];
#pragma unroll
  for (int h = 0; h < HB; h++) {
    int64_t qo = a.q.offset(s.batch, s.q_start + t, h0 + (h < nh ? h : 0)) + dg * 8;
#pragma unroll
    for (int c = 0; c < 8; c++) qv[h][c] = h < nh ? load1(a.q.data, a.q.dt, qo + c) : 0.f;
  }
  const int64_t kbase = int64_t(s.batch) * a.k.sb + int64_t(s.k_start) * a.k.st + int64_t(kvh) * a.k.sh;
  // The same trip count for every thread: the dot products reduce across lanes.
  for (int64_t b0 = i_lo; b0 < i_hi; b0 += SLOTS * U) {
    int64_t off[U], idx[U];
    bool valid[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      idx[u] = b0 + slot + u * SLOTS;
      valid[u] = idx[u] < i_hi;
      off[u] = kbase + (rs.lo + threshold_sample_pos(valid[u] ? idx[u] : i_lo, ns, rs.m)) * a.k.st + dg * 8;
    }
    load_groups<U>(a.k, off, valid, a.vec, [&](int u, const float (&x)[8]) {
#pragma unroll
      for (int h = 0; h < HB; h++) {
        float d = 0.f;
#pragma unroll
        for (int c = 0; c < 8; c++) d = fmaf(qv[h][c], x[c], d);
#pragma unroll
        for (int o = TPR / 2; o >= 1; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (dg == 0 && valid[u] && h < nh) skey0[h * kMaxSamples + idx[u]] = order_key(d * a.scale);
      }
    });
  }
  cluster.sync();  // every sampled key is in the first block's shared memory
  if (part != 0) return;
  if (tid < nh) a.cnt[rr * a.Hq + h0 + tid] = 0;
  if (tid == 0) a.done[item] = 0;
  if (warp >= nh) return;
  // Warp h, for head h: the largest 16-bit prefix b with at least `need` sampled keys >= b << 16,
  // by binary search (the need-th largest key has prefix b). The keys sit in registers.
  constexpr int kPer = kMaxSamples / 32;
  const int lane = tid & 31;
  uint32_t key[kPer];
#pragma unroll
  for (int i = 0; i < kPer; i++) {
    const int j = lane + 32 * i;
    key[i] = j < ns ? skey[warp * kMaxSamples + j] : 0u;
  }
  uint32_t lo = 0, hi = 0xffffu;  // every key is >= 0, and need <= ns
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) >> 1, edge = mid << 16;
    int c = 0;
#pragma unroll
    for (int i = 0; i < kPer; i++) c += key[i] >= edge;
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
    if (c >= need) lo = mid; else hi = mid - 1;
  }
  if (lane == 0) thr[warp] = lo << 16;
}

template <int D, int HB>
void run_sample(const SampleArgs& a, int64_t blocks) {
  constexpr size_t smem = size_t(HB) * kMaxSamples * 4;
  static bool attr = false;
  if (!attr) {
    TOPK_CUDA(cudaFuncSetAttribute(sample_kernel<D, HB>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    TOPK_CUDA(cudaFuncSetAttribute(sample_kernel<D, HB>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    attr = true;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(blocks));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream();
  cudaLaunchAttribute attr_cl[1];
  attr_cl[0].id = cudaLaunchAttributeClusterDimension;
  attr_cl[0].val.clusterDim.x = unsigned(a.parts);
  attr_cl[0].val.clusterDim.y = 1;
  attr_cl[0].val.clusterDim.z = 1;
  cfg.attrs = attr_cl;
  cfg.numAttrs = 1;
  TOPK_CUDA(cudaLaunchKernelEx(&cfg, sample_kernel<D, HB>, a));
  TOPK_CUDA_LAUNCH();
}

}  // namespace

void launch_sample_thresholds(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                              const SelectOpts& sel, int64_t cap, uint32_t* thr, int* cnt,
                              int* done) {
  if (r1 <= r0) return;
  SampleArgs a;
  a.seqs = st.d;
  a.nseq = st.n;
  a.r0 = r0;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  const int HB = score_item_heads(a.G);
  a.nslice = (a.G + HB - 1) / HB;
  a.scale = p.scale;
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.vec = rows_aligned(a.k);
  a.sel = sel;
  a.cap = cap;
  a.thr = thr;
  a.cnt = cnt;
  a.done = done;
  const int64_t items = (r1 - r0) * p.Hkv * a.nslice;
  // Clusters of 1, 2, 4 or 8 blocks: about one block per SM. (H100, B=8 S=128K: 37 us with
  // 2 per item, 43 with 4, 48 with 8, 54 with 1.)
  const int64_t want = (num_sms() + items - 1) / items;
  a.parts = want >= 8 ? 8 : want >= 4 ? 4 : want >= 2 ? 2 : 1;

  int64_t blocks = items * a.parts;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_attention_forward: too many rows for one launch");
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "topk_attention_forward",
      if (HB == 4) run_sample<kD, 4>(a, blocks); else run_sample<kD, 8>(a, blocks));
}

}  // namespace topk::cuda
