// Attention (flash-decoding splits) on tensor cores for bf16 K and V: the fast path of
// attention_forward, and of sparse_attention_forward when a list serves a whole KV group (the
// indexer's one list per query, group-shared top-k). A block owns (row, KV head, slice of up to
// 8 heads of the group, split); 64-key K and V tiles (consecutive keys, or the list's keys
// gathered row by row, their list entries loaded a tile ahead) stream through a cp.async ring in
// shared memory and are read once for all the slice's heads. Per tile:
//   scores   S = K q (keys x dims times dims x heads, m16n8k16), q split into bf16 parts so
//            that the products keep q's precision (1 part for bf16 q, 2 for f16, 3 for f32);
//   softmax  one warp per head: running max and sum, weights p = e^(s - m);
//   values   O^T += V^T P^T (dims x keys times keys x heads), with p split into two bf16
//            parts (16 significant bits) so that the weights lose nothing that matters.
// Partials (m, l, acc) of every split go to combine_kernel (attend.cu), as from attend_kernel.
// Head dims 64, 128 and 256; at 256 a block's ring (192 KiB) leaves room for one block per SM,
// which then may use 255 registers (q fragments of 3 parts are 96 of them).
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/mma.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kKeys = 64;   // keys per tile
constexpr int kHeads = 8;   // head columns of the mma (a slice's heads, zero-padded)
constexpr int kStages = 3;  // ring depth

struct MmaArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0;
  int Hq, Hkv, G, nslice;
  int64_t chunk;
  int nsplit;
  float scale;
  bool causal;
  DRows q, k, v;
  const int32_t* idx;  // [B, Tq, Hkv, K] key lists (one per KV head), or null for every key
  int64_t K;
  int64_t Tq;
  float2* pml;  // [nrows, Hq, nsplit]
  float* pacc;  // [nrows, Hq, nsplit, D]
};

template <int D>
constexpr int tile_bytes() { return kKeys * 2 * D; }  // swizzled rows (common.cuh)

template <int D>
__global__ void __launch_bounds__(kThreads, D <= 128 ? 2 : 1) attend_mma_kernel(const MmaArgs a) {
  constexpr int pitch = 2 * D;
  constexpr int cpr = D / 8;  // 16-byte chunks per row
  // 16-dim groups of the O^T product per warp: D = 64 leaves warps 4-7 out, 256 gives each
  // warp groups warp and warp + 8.
  constexpr int warps = kThreads / 32;
  constexpr int dgw = D / 16 > warps ? D / 16 / warps : 1;
  static_assert(D / 16 <= warps * dgw, "every 16-dim group of O^T has a warp");
  extern __shared__ __align__(16) unsigned char ring[];  // [kStages][K tile, V tile]
  // Rows padded so that the fragment stores of ss and the B-fragment loads of sp (8 heads x
  // 4 key pairs per warp) are conflict-free.
  __shared__ float ss[kHeads][kKeys + 4];                      // scaled scores
  __shared__ __align__(16) uint16_t sp[2][kHeads][kKeys + 8];  // weights, bf16 hi and lo parts
  __shared__ float salpha[kHeads];
  __shared__ bool sok[kStages][kKeys];  // listed keys that exist (sparse)
  static_assert(kStages * 2 * tile_bytes<D>() + sizeof(ss) + sizeof(sp) + sizeof(salpha) +
                        sizeof(sok) <= kMaxBlockSmem,
                "the ring and the static buffers exceed a block's shared memory");

  const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31;
  const int g = lane >> 2, t2 = (lane & 3) * 2;  // mma fragment coordinates
  const int64_t item = blockIdx.x;
  const int64_t rr = item / (a.Hkv * a.nslice);
  const int rest = int(item % (a.Hkv * a.nslice));
  const int kvh = rest / a.nslice, slice = rest % a.nslice;
  const int h0 = kvh * a.G + slice * kHeads;
  const int nh = min(kHeads, a.G - slice * kHeads);
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int32_t* list =
      a.idx ? a.idx + ((int64_t(s.batch) * a.Tq + s.q_start + t) * a.Hkv + kvh) * a.K : nullptr;
  const int64_t n = list ? a.K : visible_keys(s, t, a.causal);
  const int64_t p_begin = int64_t(blockIdx.y) * a.chunk;
  const int64_t p_end = min(n, p_begin + a.chunk);
  const int64_t ntiles = p_end > p_begin ? (p_end - p_begin + kKeys - 1) / kKeys : 0;
  const char* kbase = a.k.data + (int64_t(s.batch) * a.k.sb + int64_t(s.k_start) * a.k.st + int64_t(kvh) * a.k.sh) * 2;
  const char* vbase = a.v.data + (int64_t(s.batch) * a.v.sb + int64_t(s.k_start) * a.v.st + int64_t(kvh) * a.v.sh) * 2;

  // A thread copies one 16-byte column (tid % cpr) of kRows rows of each tile. With a list, the
  // rows' entries of the next tile are loaded one tile ahead (fetch), so that no copy waits for
  // its index to come back from memory.
  constexpr int kRows = kKeys * cpr / kThreads;
  static_assert(kKeys * cpr % kThreads == 0 && kThreads % cpr == 0, "whole rows a pass");
  const int col = tid % cpr;
  int32_t jnext[kRows];
  auto fetch = [&](int64_t i) {  // the list entries of tile i's rows (i past the split: none)
#pragma unroll
    for (int q = 0; q < kRows; q++) {
      const int64_t pos = p_begin + i * kKeys + tid / cpr + q * (kThreads / cpr);
      jnext[q] = list && i < ntiles && pos < p_end ? list[pos] : 0;
    }
  };
  // Tile i of the split (K then V) into stage i % kStages, its list entries already in jnext;
  // rows past p_end are not read. Then the entries of tile i + 1.
  auto issue = [&](int64_t i) {
    if (i < ntiles) {
      const int64_t p0 = p_begin + i * kKeys;
      const int rows = p_end - p0 < kKeys ? int(p_end - p0) : kKeys;
      unsigned char* dk = ring + (i % kStages) * 2 * tile_bytes<D>();
      unsigned char* dv = dk + tile_bytes<D>();
#pragma unroll
      for (int q = 0; q < kRows; q++) {
        const int row = tid / cpr + q * (kThreads / cpr), dc = swizzled_chunk(row, col);
        if (row >= rows) break;
        int64_t j = p0 + row;
        if (list) {
          // A list entry outside the sequence's keys (-1 padding) is masked: its V row zeroed.
          j = jnext[q];
          const bool ok = j >= 0 && j < s.S;
          if (col == 0) sok[i % kStages][row] = ok;
          if (!ok) {
            *reinterpret_cast<uint4*>(dv + row * pitch + dc * 16) = make_uint4(0, 0, 0, 0);
            continue;
          }
        }
        cp_async16(dk + row * pitch + dc * 16, kbase + j * a.k.st * 2 + col * 16);
        cp_async16(dv + row * pitch + dc * 16, vbase + j * a.v.st * 2 + col * 16);
      }
      // V rows past the end get weight 0, and 0 x NaN of stale shared memory would be NaN.
      for (int e = tid; e < (kKeys - rows) * cpr; e += kThreads)
        *reinterpret_cast<uint4*>(dv + (rows + e / cpr) * pitch + (e % cpr) * 16) = make_uint4(0, 0, 0, 0);
    }
    cp_async_commit();
    fetch(i + 1);
  };
  fetch(0);
  for (int i = 0; i < kStages - 1; i++) issue(i);

  // q as B fragments (warps 0-3 score 16 keys each): head g, dims 16 ks + t2 + {0, 1}, + 8.
  const int qparts = a.q.dt == kBF16 ? 1 : a.q.dt == kF16 ? 2 : 3;
  uint32_t qb[3][D / 16][2];
  if (warp < kKeys / 16) load_q_frags<D>(a.q, a.q.offset(s.batch, s.q_start + t, h0), nh, qparts, qb);

  float m_run = -INFINITY, l_run = 0.f;  // of head `warp`, in that warp
  float acc[dgw][4] = {};  // O^T: dims 16 (warp + 8 j) + g (+ 8), heads t2 (+ 1)
  for (int64_t i = 0; i < ntiles; i++) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile i is in; every thread is done with the stage of tile i - 1
    issue(i + kStages - 1);
    const unsigned char* kt = ring + (i % kStages) * 2 * tile_bytes<D>();
    const unsigned char* vt = kt + tile_bytes<D>();
    const int64_t p0 = p_begin + i * kKeys;

    if (warp < kKeys / 16) {
      float c[4];
      slab_scores<D>(kt + warp * 16 * pitch, qb, qparts, c);
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = warp * 16 + g + 8 * (e >> 1);
        const bool ok = p0 + key < p_end && (!list || sok[i % kStages][key]);
        ss[t2 + (e & 1)][key] = ok ? c[e] * a.scale : -INFINITY;
      }
    }
    __syncthreads();

    {  // softmax of head `warp` over the tile (padding heads get weight 0)
      const float x0 = ss[warp][lane], x1 = ss[warp][lane + 32];
      float tmax = fmaxf(x0, x1);
#pragma unroll
      for (int o = 16; o >= 1; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
      const float m_new = fmaxf(m_run, tmax);
      const bool live = warp < nh && m_new != -INFINITY;
      const float alpha = live ? __expf(m_run - m_new) : 1.f;
      const float w0 = live ? __expf(x0 - m_new) : 0.f;
      const float w1 = live ? __expf(x1 - m_new) : 0.f;
      float sum = w0 + w1;
#pragma unroll
      for (int o = 16; o >= 1; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      l_run = l_run * alpha + sum;
      m_run = m_new;
      uint16_t h[3];
      split_bf16(w0, 2, h);
      sp[0][warp][lane] = h[0];
      sp[1][warp][lane] = h[1];
      split_bf16(w1, 2, h);
      sp[0][warp][lane + 32] = h[0];
      sp[1][warp][lane + 32] = h[1];
      if (lane == 0) salpha[warp] = alpha;
    }
    __syncthreads();

    if (warp < D / 16) {
      const float al0 = salpha[t2], al1 = salpha[t2 + 1];
#pragma unroll
      for (int j = 0; j < dgw; j++) {
        acc[j][0] *= al0;
        acc[j][1] *= al1;
        acc[j][2] *= al0;
        acc[j][3] *= al1;
      }
      // A = V^T (dims x keys) by transposing loads of V rows: lane gives key row
      // 16 ks + lane % 8 (+ 8 for lanes 16-31) at dims 16 warp (+ 8 for lanes 8-15, 24-31);
      // the swizzle depends on the row only through lane % 8. It flips the low 3 bits of the
      // chunk alone, so the chunks of group warp + 8 j lie 16 j chunks further along the row.
      const int vr = (lane & 7) + ((lane >> 4) << 3);
      const unsigned char* vrow = vt + vr * pitch + swizzled_chunk(vr, 2 * warp + ((lane >> 3) & 1)) * 16;
#pragma unroll
      for (int ks = 0; ks < kKeys / 16; ks++) {
        uint32_t af[dgw][4];
#pragma unroll
        for (int j = 0; j < dgw; j++)
          ldmatrix_x4_trans(af[j], vrow + ks * 16 * pitch + j * warps * 2 * 16);
#pragma unroll
        for (int p = 0; p < 2; p++) {
          // The weights' B fragment serves every dim group of the warp.
          const uint32_t b0 = *reinterpret_cast<const uint32_t*>(&sp[p][g][16 * ks + t2]);
          const uint32_t b1 = *reinterpret_cast<const uint32_t*>(&sp[p][g][16 * ks + t2 + 8]);
#pragma unroll
          for (int j = 0; j < dgw; j++) mma_bf16(acc[j], af[j], b0, b1);
        }
      }
    }
  }
  cp_async_wait<0>();

  // Partials of this split.
  const int64_t prow = (rr * a.Hq + h0) * a.nsplit + blockIdx.y;
  if (warp < nh && lane == 0) a.pml[prow + int64_t(warp) * a.nsplit] = make_float2(m_run, l_run);
  if (warp < D / 16) {
#pragma unroll
    for (int j = 0; j < dgw; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int h = t2 + (e & 1), d = (warp + warps * j) * 16 + g + 8 * (e >> 1);
        if (h < nh) a.pacc[(prow + int64_t(h) * a.nsplit) * D + d] = acc[j][e];
      }
  }
}

template <int D>
void run_attend_mma(const AttnParams& p, const SeqTable& st, MmaArgs a, int64_t nrows, int max_splits) {
  constexpr size_t smem = size_t(kStages) * 2 * tile_bytes<D>();
  static int per_sm = -1;
  if (per_sm < 0) {
    allow_smem(attend_mma_kernel<D>, smem);
    TOPK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attend_mma_kernel<D>, kThreads, smem));
    if (per_sm < 1) per_sm = 1;
  }
  const int64_t items = nrows * a.Hkv * a.nslice;
  const int64_t npos = a.idx ? a.K : p.Smax;
  const int ns = choose_splits(items, npos, per_sm, max_splits);
  const int64_t per = (npos + ns - 1) / ns;
  a.chunk = (per + kTile - 1) / kTile * kTile;
  if (a.chunk < kTile) a.chunk = kTile;
  a.nsplit = int(npos > 0 ? (npos + a.chunk - 1) / a.chunk : 1);
  const size_t nml = size_t(nrows) * a.Hq * a.nsplit;
  char* ws = static_cast<char*>(workspace(kWsPartial, nml * (sizeof(float2) + sizeof(float) * D)));
  a.pml = reinterpret_cast<float2*>(ws);
  a.pacc = reinterpret_cast<float*>(ws + nml * sizeof(float2));
  attend_mma_kernel<D><<<dim3(unsigned(items), unsigned(a.nsplit)), kThreads, smem, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
  launch_combine(p, st, a.r0, nrows, a.nsplit, reinterpret_cast<const float*>(a.pml), a.pacc);
}

}  // namespace

bool launch_attend_mma(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                       const int32_t* idx, int Hsel, int64_t K, int max_splits) {
  if (idx && Hsel != p.Hkv) return false;  // a list per query head: the heads of a block differ
  MmaArgs a;
  a.idx = idx;
  a.K = K;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  if (a.k.dt != kBF16 || a.v.dt != kBF16 || !rows_aligned(a.k) || !rows_aligned(a.v)) return false;
  if (p.D != 64 && p.D != 128 && p.D != 256) return false;
  a.seqs = st.d;
  a.nseq = st.n;
  a.r0 = r0;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  a.nslice = (a.G + kHeads - 1) / kHeads;
  a.scale = p.scale;
  a.causal = p.causal;
  a.Tq = p.Tq;
  if (p.D == 64) run_attend_mma<64>(p, st, a, r1 - r0, max_splits);
  else if (p.D == 128) run_attend_mma<128>(p, st, a, r1 - r0, max_splits);
  else run_attend_mma<256>(p, st, a, r1 - r0, max_splits);
  return true;
}

}  // namespace topk::cuda
