// Attention of query rows over key tiles, split over keys (flash-decoding) with a combine step.
// One kernel serves full attention (keys 0..n-1 of the row) and sparse attention (keys from an
// index list). A block owns (row, KV head, slice of up to HB heads of the group, split); each
// K/V row is read once with 16-byte loads for all HB heads. Per tile of 128 keys (64 at
// D = 256): scores (or precomputed ones) -> shared memory -> online softmax (one warp per head)
// -> V accumulation. Partials (m, l, acc) of every split are merged by combine_kernel into o
// and lse. Head dims 64, 128 and 256.
#include <algorithm>
#include <cmath>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/reduce.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;

struct AttendArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0, nrows;
  int Hq, Hkv, G, nslice;
  int64_t Smax, chunk;
  int nsplit;
  float scale;
  bool causal, vec;
  DRows q, k, v;
  const int32_t* idx;
  int Hsel;
  int64_t K, Tq;
  const float* pre;
  float2* pml;  // [nrows, Hq, nsplit]
  float* pacc;  // [nrows, Hq, nsplit, D]
};

template <int D, int HB>
__global__ void __launch_bounds__(kThreads, HB <= 4 ? 2 : 1) attend_kernel(const AttendArgs a) {
  constexpr int TPR = D / 8;
  constexpr int SLOTS = kThreads / TPR;
  // Keys per tile: past D = 128, as many as make the bytes of a 128-key tile at D = 128, so
  // that a thread has the same keys per tile (KPT) and the same registers for them as there
  // (at D = 256 with 128 keys, raw K and V of 16 keys a thread spilled hundreds of bytes).
  constexpr int TK = D <= 128 ? kTile : kTile * 128 / D;
  static_assert(kTile % TK == 0 && TK % 32 == 0 && TK % SLOTS == 0,
                "a split's chunk is whole tiles; a lane softmaxes TK / 32 keys of a head");
  constexpr int KPT = TK / SLOTS;
  constexpr int KB = HB >= 4 ? KPT / 2 : KPT;  // keys per dot batch
  // Dot products summed per batch: below TPR values, 64 and 128 pad them with zeros to TPR
  // for reduce_scatter; 256 sums them over RW lanes and then adds up the TPR / RW lane groups
  // (the padding would cost 24 registers and 22 shuffles a batch with one head).
  constexpr int NB = KB * HB >= TPR || D > 128 ? KB * HB : TPR;
  constexpr int RW = NB < TPR ? NB : TPR;
  __shared__ float sc[2][HB][TK];
  __shared__ float salpha[2][HB];
  __shared__ float red[SLOTS][D];

  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR, warp = tid / 32, lane = tid % 32;
  const int64_t item = blockIdx.x;
  const int64_t rr = item / (a.Hkv * a.nslice);
  const int rest = int(item % (a.Hkv * a.nslice));
  const int kvh = rest / a.nslice, slice = rest % a.nslice;
  const int h0 = kvh * a.G + slice * HB;
  const int nh = min(HB, a.G - slice * HB);
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
  const bool sparse = a.idx != nullptr;
  const int32_t* list = nullptr;
  int64_t npos;
  if (sparse) {
    int hs = a.Hsel == a.Hq ? h0 : kvh;
    list = a.idx + (qrow * a.Hsel + hs) * a.K;
    npos = a.K;
  } else {
    npos = visible_keys(s, t, a.causal);
  }
  const int64_t p_begin = int64_t(blockIdx.y) * a.chunk;
  const int64_t p_end = min(npos, p_begin + a.chunk);
  const int64_t kbase = int64_t(s.batch) * a.k.sb + int64_t(s.k_start) * a.k.st + int64_t(kvh) * a.k.sh;
  const int64_t vbase = int64_t(s.batch) * a.v.sb + int64_t(s.k_start) * a.v.st + int64_t(kvh) * a.v.sh;
  const float* pre_row = a.pre ? a.pre + (rr * a.Hq + h0) * a.Smax : nullptr;

  // q of the block's heads in shared memory (registers go to raw K, dots and acc).
  __shared__ __align__(16) float sq[HB][D];
  static_assert(sizeof(sc) + sizeof(salpha) + sizeof(red) + sizeof(sq) <= kDefaultBlockSmem,
                "static shared memory of a block is at most 48 KiB");
  if (!a.pre) {
    for (int e = tid; e < HB * D; e += kThreads) {
      int h = e / D, d = e % D;
      sq[h][d] = h < nh ? load1(a.q.data, a.q.dt, a.q.offset(s.batch, s.q_start + t, h0 + h) + d) : 0.f;
    }
  }
  __syncthreads();
  auto load_q = [&](int h, float (&qh)[8]) {
    float4 x = *reinterpret_cast<const float4*>(&sq[h][dg * 8]);
    float4 y = *reinterpret_cast<const float4*>(&sq[h][dg * 8 + 4]);
    qh[0] = x.x; qh[1] = x.y; qh[2] = x.z; qh[3] = x.w;
    qh[4] = y.x; qh[5] = y.y; qh[6] = y.z; qh[7] = y.w;
  };
  float acc[HB][8];
#pragma unroll
  for (int h = 0; h < HB; h++)
#pragma unroll
    for (int e = 0; e < 8; e++) acc[h][e] = 0.f;
  float m_run = -INFINITY, l_run = 0.f;  // of head `warp`, in that warp
  int buf = 0;

  for (int64_t p0 = p_begin; p0 < p_end; p0 += TK) {
    int32_t key[KPT];
    bool valid[KPT];
#pragma unroll
    for (int k = 0; k < KPT; k++) {
      int64_t pos = p0 + slot + k * SLOTS;
      int64_t j = pos;
      bool ok = pos < p_end;
      if (sparse) {
        j = ok ? list[pos] : -1;
        ok = ok && j >= 0 && j < s.S;
      }
      key[k] = ok ? int32_t(j) : 0;
      valid[k] = ok;
    }
    if (!a.pre) {
      // In batches of KB keys, so that raw K, partial dots, q and acc fit in registers.
#pragma unroll
      for (int b0 = 0; b0 < KPT; b0 += KB) {
        float v[NB];
#pragma unroll
        for (int i = 0; i < NB; i++) v[i] = 0.f;
        int64_t off[KB];
        bool vb[KB];
#pragma unroll
        for (int k = 0; k < KB; k++) {
          off[k] = kbase + int64_t(key[b0 + k]) * a.k.st + dg * 8;
          vb[k] = valid[b0 + k];
        }
        if (a.k.dt != kF32) {
          uint4 raw[KB];
#pragma unroll
          for (int k = 0; k < KB; k++) raw[k] = vb[k] ? load_part(a.k, off[k], 0, a.vec) : make_uint4(0, 0, 0, 0);
#pragma unroll
          for (int h = 0; h < HB; h++) {
            float qh[8];
            load_q(h, qh);
#pragma unroll
            for (int k = 0; k < KB; k++) {
              float x[8];
              cvt8(raw[k], a.k.dt, x);
              float d = 0.f;
#pragma unroll
              for (int e = 0; e < 8; e++) d = fmaf(qh[e], x[e], d);
              v[k * HB + h] = d;
            }
          }
        } else {
          load_groups<KB>(a.k, off, vb, a.vec, [&](int k, const float (&x)[8]) {
#pragma unroll
            for (int h = 0; h < HB; h++) {
              float qh[8];
              load_q(h, qh);
              float d = 0.f;
#pragma unroll
              for (int e = 0; e < 8; e++) d = fmaf(qh[e], x[e], d);
              v[k * HB + h] = d;
            }
          });
        }
        reduce_scatter<NB, RW>(v);
        if constexpr (RW < TPR) {
#pragma unroll
          for (int o = RW; o < TPR; o <<= 1) v[0] += __shfl_xor_sync(0xffffffffu, v[0], o);
        }
#pragma unroll
        for (int i = 0; i < NB / RW; i++) {
          int id = dg * (NB / RW) + i;
          if (id < KB * HB) {
            int k = b0 + id / HB, h = id % HB;
            sc[buf][h][slot + k * SLOTS] = valid[k] ? v[i] * a.scale : -INFINITY;
          }
        }
      }
    } else if (dg < HB) {
#pragma unroll
      for (int k = 0; k < KPT; k++)
        sc[buf][dg][slot + k * SLOTS] =
            valid[k] && dg < nh ? pre_row[int64_t(dg) * a.Smax + key[k]] : -INFINITY;
    }
    // V rows of this tile: with one head per block, issued before the softmax so that they
    // arrive meanwhile; with more heads, after it (registers).
    constexpr bool kEarlyV = HB == 1;
    uint4 vraw[KPT];
    const bool v16 = a.v.dt != kF32;
    auto load_v16 = [&]() {
#pragma unroll
      for (int k = 0; k < KPT; k++)
        vraw[k] = valid[k] ? load_part(a.v, vbase + int64_t(key[k]) * a.v.st + dg * 8, 0, a.vec)
                           : make_uint4(0, 0, 0, 0);
    };
    if (kEarlyV && v16) load_v16();
    __syncthreads();
    if (warp < nh) {
      float x[TK / 32];
      float tmax = -INFINITY;
#pragma unroll
      for (int i = 0; i < TK / 32; i++) {
        x[i] = sc[buf][warp][lane + 32 * i];
        tmax = fmaxf(tmax, x[i]);
      }
#pragma unroll
      for (int o = 16; o >= 1; o >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
      float m_new = fmaxf(m_run, tmax);
      float alpha = m_new == -INFINITY ? 1.f : __expf(m_run - m_new);
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < TK / 32; i++) {
        float pr = m_new == -INFINITY ? 0.f : __expf(x[i] - m_new);
        sc[buf][warp][lane + 32 * i] = pr;
        sum += pr;
      }
#pragma unroll
      for (int o = 16; o >= 1; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      l_run = l_run * alpha + sum;
      m_run = m_new;
      if (lane == 0) salpha[buf][warp] = alpha;
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < HB; h++) {
      float al = h < nh ? salpha[buf][h] : 0.f;
#pragma unroll
      for (int e = 0; e < 8; e++) acc[h][e] *= al;
    }
    auto accumulate = [&](int k, const float (&x)[8]) {
#pragma unroll
      for (int h = 0; h < HB; h++) {
        float pr = h < nh ? sc[buf][h][slot + k * SLOTS] : 0.f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[h][e] = fmaf(pr, x[e], acc[h][e]);
      }
    };
    if (v16) {
      if (!kEarlyV) load_v16();
#pragma unroll
      for (int k = 0; k < KPT; k++) {
        float x[8];
        cvt8(vraw[k], a.v.dt, x);
        accumulate(k, x);
      }
    } else {
      int64_t voff[KPT];
#pragma unroll
      for (int k = 0; k < KPT; k++) voff[k] = vbase + int64_t(key[k]) * a.v.st + dg * 8;
      load_groups<KPT>(a.v, voff, valid, a.vec, accumulate);
    }
    buf ^= 1;
  }

  // Partials of this split.
  const int64_t prow = (rr * a.Hq + h0) * a.nsplit + blockIdx.y;
  if (warp < nh && lane == 0) a.pml[prow + int64_t(warp) * a.nsplit] = make_float2(m_run, l_run);
#pragma unroll
  for (int h = 0; h < HB; h++) {
    if (h >= nh) break;
#pragma unroll
    for (int e = 0; e < 8; e++) red[slot][dg * 8 + e] = acc[h][e];
    __syncthreads();
    for (int d = tid; d < D; d += kThreads) {
      float x = 0.f;
#pragma unroll 4
      for (int sl = 0; sl < SLOTS; sl++) x += red[sl][d];
      a.pacc[(prow + int64_t(h) * a.nsplit) * D + d] = x;
    }
    __syncthreads();
  }
}

struct CombineArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0;
  int Hq, D, nsplit;
  int64_t Tq;
  const float2* pml;
  const float* pacc;
  DOut dst;
};

// One block per (row, head): o = sum_s e^(m_s - M) acc_s / L, lse = M + ln L.
__global__ void combine_kernel(const CombineArgs a) {
  __shared__ float sM, sL;
  const int64_t rr = blockIdx.x / a.Hq;
  const int h = blockIdx.x % a.Hq;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0;
  const float2* ml = a.pml + (rr * a.Hq + h) * a.nsplit;
  if (threadIdx.x < 32) {
    float M = -INFINITY;
    for (int i = threadIdx.x; i < a.nsplit; i += 32) M = fmaxf(M, ml[i].x);
    for (int o = 16; o >= 1; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float L = 0.f;
    for (int i = threadIdx.x; i < a.nsplit; i += 32) {
      float2 x = ml[i];
      float wi = (M == -INFINITY || x.x == -INFINITY) ? 0.f : __expf(x.x - M);
      L += wi * x.y;
    }
    for (int o = 16; o >= 1; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
    if (threadIdx.x == 0) {
      sM = M;
      sL = L;
    }
  }
  __syncthreads();
  const float L = sL;
  const bool empty = !(L > 0.f);
  const float inv = empty ? 0.f : 1.f / L;
  const float* acc = a.pacc + (rr * a.Hq + h) * a.nsplit * a.D;
  int64_t ooff = a.dst.offset(s.batch, s.q_start + t, h);
  for (int d = threadIdx.x; d < a.D; d += blockDim.x) {
    float x = 0.f;
    if (!empty) {
      for (int i = 0; i < a.nsplit; i++) {
        float mi = ml[i].x;
        float wi = mi == -INFINITY ? 0.f : __expf(mi - sM);
        x = fmaf(wi, acc[int64_t(i) * a.D + d], x);
      }
    }
    store1(a.dst.o, a.dst.dt, ooff + d, x * inv);
  }
  if (threadIdx.x == 0) {
    int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + t;
    a.dst.lse[qrow * a.Hq + h] = empty ? INFINITY : sM + logf(L);
  }
}

template <int D, int HB>
int blocks_per_sm() {
  static int per_sm = -1;
  if (per_sm < 0) {
    TOPK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, attend_kernel<D, HB>, kThreads, 0));
    if (per_sm < 1) per_sm = 1;
  }
  return per_sm;
}

template <int D, int HB>
void run_attend(const AttnParams& p, AttendArgs a, int64_t npos, int max_splits) {
  int64_t items = a.nrows * a.Hkv * a.nslice;
  int ns = choose_splits(items, npos, blocks_per_sm<D, HB>(), max_splits);
  int64_t per = (npos + ns - 1) / ns;
  a.chunk = (per + kTile - 1) / kTile * kTile;
  if (a.chunk < kTile) a.chunk = kTile;
  a.nsplit = int(npos > 0 ? (npos + a.chunk - 1) / a.chunk : 1);
  size_t nml = size_t(a.nrows) * a.Hq * a.nsplit;
  char* ws = static_cast<char*>(workspace(kWsPartial, nml * (sizeof(float2) + sizeof(float) * D)));
  a.pml = reinterpret_cast<float2*>(ws);
  a.pacc = reinterpret_cast<float*>(ws + nml * sizeof(float2));
  dim3 grid(unsigned(items), unsigned(a.nsplit));
  attend_kernel<D, HB><<<grid, kThreads, 0, stream()>>>(a);
  TOPK_CUDA_LAUNCH();

  launch_combine(p, SeqTable{a.seqs, a.nseq, 0, 0}, a.r0, a.nrows, a.nsplit,
                 reinterpret_cast<const float*>(a.pml), a.pacc);
}

}  // namespace

void launch_combine(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t nrows, int nsplit,
                    const float* pml, const float* pacc) {
  CombineArgs c;
  c.seqs = st.d;
  c.nseq = st.n;
  c.r0 = r0;
  c.Hq = p.Hq;
  c.D = int(p.D);
  c.nsplit = nsplit;
  c.Tq = p.Tq;
  c.pml = reinterpret_cast<const float2*>(pml);
  c.pacc = pacc;
  c.dst = dout(p);
  combine_kernel<<<unsigned(nrows * p.Hq), unsigned(p.D), 0, stream()>>>(c);
  TOPK_CUDA_LAUNCH();
}

void launch_attend(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                   const int32_t* idx, int Hsel, int64_t K, const float* prescored) {
  if (r1 <= r0) return;
  // Keep the partials under ~256 MiB: long prefills go in row ranges.
  const int64_t max_rows = std::max<int64_t>(1, (int64_t(256) << 20) / (int64_t(p.Hq) * 64 * (p.D + 2) * 4));
  for (int64_t a0 = r0; a0 < r1; a0 += max_rows) {
    int64_t a1 = std::min(r1, a0 + max_rows);
    AttendArgs a;
    a.seqs = st.d;
    a.nseq = st.n;
    a.r0 = a0;
    a.nrows = a1 - a0;
    a.Hq = p.Hq;
    a.Hkv = p.Hkv;
    a.G = p.group();
    bool per_head = idx && Hsel == p.Hq;
    int HB = (a.G == 1 || per_head) ? 1 : (a.G <= 4 ? 4 : 8);
    a.nslice = (a.G + HB - 1) / HB;
    a.Smax = p.Smax;
    a.scale = p.scale;
    a.causal = p.causal;
    a.q = drows(p.q);
    a.k = drows(p.k);
    a.v = drows(p.v);
    a.vec = rows_aligned(a.k) && rows_aligned(a.v);
    a.idx = idx;
    a.Hsel = Hsel;
    a.K = K;
    a.Tq = p.Tq;
    a.pre = prescored ? prescored + (a0 - r0) * int64_t(p.Hq) * p.Smax : nullptr;
    int64_t npos = idx ? K : p.Smax;
    int64_t cap = (int64_t(256) << 20) / (a.nrows * p.Hq * int64_t(p.D + 2) * 4);
    int max_splits = int(std::max<int64_t>(1, std::min<int64_t>(1024, cap)));
    if (!prescored && launch_attend_mma(p, st, a0, a1, idx, Hsel, K, max_splits)) continue;
    TOPK_CUDA_HEAD_DIM_SWITCH(p.D, idx ? "sparse_attention_forward" : "attention_forward",
        if (HB == 1) run_attend<kD, 1>(p, a, npos, max_splits);
        else if (HB == 4) run_attend<kD, 4>(p, a, npos, max_splits);
        else run_attend<kD, 8>(p, a, npos, max_splits));
  }
}

}  // namespace topk::cuda
