// Thresholds of the top-k decode's threshold path (topk/threshold.h): for each (row, query head),
// score an evenly spaced sample of the competing keys and take the lower edge of the 16-bit
// key bin that holds the r-th largest sampled score, r = E * samples / m. About E keys of the
// row then reach it. Rows short enough for every key to be a candidate get threshold 0 (all
// keys pass); rows that select nothing get one no score reaches. Also zeroes the candidate
// counts that the filtering score pass appends to.
// The sample of an item (row, KV head, head slice) is split over a cluster of `parts` blocks
// so that its loads run in parallel; each block writes its sampled keys into the shared memory
// of the cluster's first block, which picks the thresholds.
// bf16 K is gathered into swizzled shared-memory tiles and scored on tensor cores, like the
// score pass: with FMAs and lane reductions the sample was bound by its own instructions
// (H100, B=8 S=128K: 35 us for 17 MB of sampled rows at IPC 0.9; now about 21 us).
#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/topk/threshold.h"

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

// Shared memory of a block: the sampled keys [HB][kMaxSamples] (used in the cluster's first
// block), then for tensor cores the K offsets of the block's samples and a ring of NS tiles:
// 3 stages (3 and 4 measured the same), 2 where 3 do not fit (D = 256: 64 KiB a tile).
template <int D, int HB, int NS>
constexpr size_t sample_smem_ns() {
  return size_t(HB) * kMaxSamples * 4 + size_t(kMaxSamples) * 8 + size_t(NS) * kTile * 2 * D;
}
template <int D, int HB>
constexpr int sample_stages() {
  return sample_smem_ns<D, HB, 3>() <= kMaxBlockSmem ? 3 : 2;
}
template <int D, int HB, bool MMA>
constexpr size_t sample_smem() {
  return MMA ? sample_smem_ns<D, HB, sample_stages<D, HB>()>() : size_t(HB) * kMaxSamples * 4;
}

template <int D, int HB, bool MMA>
__global__ void __launch_bounds__(kThreads) sample_kernel(const SampleArgs a) {
  constexpr int TPR = D / 8;             // FMA: threads per key row
  constexpr int SLOTS = kThreads / TPR;  // FMA: key rows per step
  constexpr int U = 8;                   // FMA: key rows in flight per thread
  static_assert(!MMA || kThreads / 32 * 16 == kTile, "MMA: one 16-key slab of the tile per warp");
  static_assert(sample_smem<D, HB, MMA>() <= kMaxBlockSmem, "the sample's buffers fit in a block");
  constexpr int kNS = sample_stages<D, HB>();  // MMA: ring stages
  extern __shared__ __align__(16) unsigned char smem[];
  uint32_t* skey = reinterpret_cast<uint32_t*>(smem);  // [HB][kMaxSamples]
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();

  const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31;
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
  const int ns = int(threshold_samples(rs.take, rs.m));
  const int64_t e = threshold_target(rs.take, rs.m);
  const int64_t want = (e * ns + rs.m - 1) / rs.m;
  const int need = int(want < ns ? want : ns);
  uint32_t* skey0 = cluster.map_shared_rank(skey, 0);
  // The first block must be running before anyone writes to its shared memory: arrive now,
  // wait just before the first write, so that the loads are in flight meanwhile.
  asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");

  // This block's share of the sample: keys [i_lo, i_hi) of the ns sampled ones.
  const int i_lo = part * ns / a.parts, i_hi = (part + 1) * ns / a.parts;
  const int64_t kbase = int64_t(s.batch) * a.k.sb + int64_t(s.k_start) * a.k.st + int64_t(kvh) * a.k.sh;
  if constexpr (MMA) {
    int64_t* koff = reinterpret_cast<int64_t*>(smem + size_t(HB) * kMaxSamples * 4);
    unsigned char* ring = reinterpret_cast<unsigned char*>(koff + kMaxSamples);
    constexpr int rowb = 2 * D, lg_cpr = ilog2(D / 8), rstep = kThreads >> lg_cpr;
    const int nloc = i_hi - i_lo, ntiles = (nloc + kTile - 1) / kTile;
    for (int i = tid; i < nloc; i += kThreads)
      koff[i] = kbase + (rs.lo + threshold_sample_pos(i_lo + i, ns, rs.m)) * a.k.st;
    __syncthreads();
    // Thread tid copies chunk c of rows tid >> lg_cpr + j rstep; rstep is a multiple of 8
    // (at most 32 chunks a row: D <= 256), so the rows share their swizzle.
    static_assert(rstep % 8 == 0, "a thread's rows share their swizzle");
    const int c = tid & ((1 << lg_cpr) - 1), row0 = tid >> lg_cpr;
    const int dc = swizzled_chunk(row0, c);
    auto issue = [&](int tt) {
      if (tt < ntiles) {
        unsigned char* dst = ring + (tt % kNS) * (kTile * rowb);
        const int base = tt * kTile, rows = min(kTile, nloc - base);
        for (int rw = row0; rw < rows; rw += rstep)
          copy16(dst + rw * rowb + dc * 16, a.k.data + koff[base + rw] * 2 + c * 16, a.vec, 2);
      }
      cp_async_commit();
    };
#pragma unroll
    for (int i = 0; i < kNS - 1; i++) issue(i);
    uint32_t qb[3][D / 16][2];
    const int qparts = a.q.dt == kBF16 ? 1 : a.q.dt == kF16 ? 2 : 3;
    load_q_frags<D>(a.q, a.q.offset(s.batch, s.q_start + t, h0), nh, qparts, qb);
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    for (int tt = 0; tt < ntiles; tt++) {
      cp_async_wait<kNS - 2>();
      __syncthreads();  // tile tt is in; every warp is done with the stage issue() refills
      issue(tt + kNS - 1);
      float cf[4];
      slab_scores<D>(ring + (tt % kNS) * (kTile * rowb) + warp * 16 * rowb, qb, qparts, cf);
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const int key = warp * 16 + (lane >> 2) + 8 * (i >> 1), h = (lane & 3) * 2 + (i & 1);
        const int idx = i_lo + tt * kTile + key;
        if (h < nh && idx < i_hi) skey0[h * kMaxSamples + idx] = order_key(cf[i] * a.scale);
      }
    }
    cp_async_wait<0>();
  } else {
    const int dg = tid % TPR, slot = tid / TPR;
    float qv[HB][8];
#pragma unroll
    for (int h = 0; h < HB; h++) {
      int64_t qo = a.q.offset(s.batch, s.q_start + t, h0 + (h < nh ? h : 0)) + dg * 8;
#pragma unroll
      for (int c = 0; c < 8; c++) qv[h][c] = h < nh ? load1(a.q.data, a.q.dt, qo + c) : 0.f;
    }
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    // The same trip count for every thread: the dot products reduce across lanes.
    for (int b0 = i_lo; b0 < i_hi; b0 += SLOTS * U) {
      int64_t off[U];
      int idx[U];
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
  }
  cluster.sync();  // every sampled key is in the first block's shared memory
  if (part != 0) return;
  if (tid < nh) a.cnt[rr * a.Hq + h0 + tid] = 0;
  if (tid == 0) a.done[item] = 0;
  if (warp >= nh) return;
  // Warp h, for head h: the largest 16-bit prefix b with at least `need` sampled keys >= b << 16,
  // by binary search (the need-th largest key has prefix b). The keys sit in registers; only
  // the first ns / 32 of a lane's slots hold any.
  constexpr int kPer = kMaxSamples / 32;
  uint32_t key[kPer];
  const int nper = (ns + 31) / 32;
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
    for (int i = 0; i < kPer; i++)
      if (i < nper) c += key[i] >= edge;
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
    if (c >= need) lo = mid; else hi = mid - 1;
  }
  if (lane == 0) thr[warp] = lo << 16;
}

template <int D, int HB, bool MMA>
void run_sample(const SampleArgs& a, int64_t blocks) {
  constexpr size_t smem = sample_smem<D, HB, MMA>();
  static bool attr = false;
  if (!attr) {
    TOPK_CUDA(cudaFuncSetAttribute(sample_kernel<D, HB, MMA>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    attr = true;
  }
  allow_smem(sample_kernel<D, HB, MMA>, smem);
  launch_ex(sample_kernel<D, HB, MMA>, blocks, kThreads, smem, a.parts, false, a);
}

// Tensor cores for bf16 K, FMAs for the other dtypes.
template <int D, int HB>
void run_sample_dt(const SampleArgs& a, int64_t blocks) {
  if (a.k.dt == kBF16) run_sample<D, HB, true>(a, blocks);
  else run_sample<D, HB, false>(a, blocks);
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
  // Clusters of 1, 2, 4 or 8 blocks: about one block per SM, all in one wave (the tensor-core
  // kernel's ring allows one block per SM). H100, B=8 S=128K, whole top-k decode: 822-824 us
  // with 2 per item, 825-828 with 1, 833 with 4 (two waves).
  const int64_t want = (num_sms() + items - 1) / items;
  a.parts = want >= 8 ? 8 : want >= 4 ? 4 : want >= 2 ? 2 : 1;

  int64_t blocks = items * a.parts;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "topk_attention_forward: too many rows for one launch");
  TOPK_CUDA_HEAD_DIM_SWITCH(p.D, "topk_attention_forward",
      if (HB == 4) run_sample_dt<kD, 4>(a, blocks); else run_sample_dt<kD, 8>(a, blocks));
}

void sample_thresholds(const AttnParams& p, const SelectOpts& sel, int64_t K, uint32_t* thr) {
  SeqTable st = upload_seqs(p);
  if (st.rows == 0) return;
  const int64_t hr = st.rows * p.Hq, items = threshold_items(p, st.rows);
  int* cnt = static_cast<int*>(workspace(kWsThr, size_t(hr + items) * 4));
  launch_sample_thresholds(p, st, 0, st.rows, sel, threshold_cap(K, p.Smax), thr, cnt, cnt + hr);
}

}  // namespace topk::cuda
