// Full attention backward on CUDA: FlashAttention-2 recomputation from q, k, v, o, lse and dout,
// with no S x S buffer and no floating-point atomics (every gradient element is summed by one
// thread in a fixed order, so runs are bit-identical).
//   prep      per (row, head): ld = (lse log2 e, Delta = dout . o), and dout as 16 bits when
//             the tensor-core kernels need it in q's dtype (Delta then from those 16 bits);
//   then      the tensor-core kernels of flash_backward.cu (bf16 or f16 q, k, v; the head dims
//             flash_backward_fits takes; aligned rows): dK/dV per key tile, dQ per query tile;
//   or        the simple kernels below for every other shape (f32 or mixed dtypes, any D): a
//             warp per query row for dq, a warp per key row for dk and dv, rows of D floats in
//             shared memory, so any head dim fits in O(D) memory per warp (D = 256: 8 warps,
//             24 KiB for dq and 32 KiB for dk and dv).
// dk and dv are overwritten whole: the kernels write every key row of every sequence (0 where
// no query reaches), and a memset clears rows no sequence owns. dq rows of no sequence (past
// seqlens_q, outside every cu_seqlens_q span) are not written.
#include <algorithm>
#include <vector>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;

struct PrepArgs {
  const DSeq* seqs;
  int nseq;
  int64_t R;  // compact query rows
  int Hq, D;
  int64_t Tq;
  DRows o, dout;      // [B, Tq, Hq, D], any float dtype
  const float* lse;   // [B, Tq, Hq]
  float2* ld;         // [Hq, R]: (lse log2 e, Delta)
  void* dout16;       // [B, Tq, Hq, D] contiguous in dtype dt16, or null
  int dt16;
};

// x rounded to dtype dt (kBF16 or kF16), to nearest, back as fp32.
__device__ __forceinline__ float round16(float x, int dt) {
  return dt == kBF16 ? __bfloat162float(__float2bfloat16_rn(x)) : __half2float(__float2half_rn(x));
}

// A warp per (compact row, head): Delta = dout . o in fp32 over lanes, the pair to ld, and the
// row of dout rounded to 16 bits when asked for. Delta is then the rounded dout's: the kernels
// take dP = dout . v from the copy, and only with one dout in both dot products does
// dS = P (dP - Delta) sum to 0 over the row's keys as a softmax gradient must (0 itself for a
// row of one key, where o = v); the f32 dout's Delta leaves P (dout16 - dout) . o in it.
__global__ void bwd_prep_kernel(const PrepArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t item = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (item >= a.R * a.Hq) return;
  const int64_t r = item / a.Hq;
  const int h = int(item % a.Hq);
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t row = s.q_start + (r - s.r0);
  const int64_t oo = a.o.offset(s.batch, row, h), od = a.dout.offset(s.batch, row, h);
  const int64_t qrow = int64_t(s.batch) * a.Tq + row;
  float acc = 0.f;
  for (int d = lane; d < a.D; d += 32) {
    float x = load1(a.dout.data, a.dout.dt, od + d);
    if (a.dout16) {
      x = round16(x, a.dt16);
      store1(a.dout16, a.dt16, (qrow * a.Hq + h) * a.D + d, x);
    }
    acc = fmaf(x, load1(a.o.data, a.o.dt, oo + d), acc);
  }
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) a.ld[int64_t(h) * a.R + r] = make_float2(a.lse[qrow * a.Hq + h] * kLog2e, acc);
}

struct SimpleArgs {
  const DSeq* seqs;
  int nseq;
  const FlashTile* tiles;  // dK/dV: tiles of `warps` key rows
  int64_t R;
  int Hq, Hkv, G, D, warps;
  float sl2, scale;
  bool causal;
  DRows q, k, v, dout;  // any float dtypes
  const float2* ld;     // [Hq, R]
  float* dq;            // [B, Tq, Hq, D]
  float* dk;            // [B, Smax, Hkv, D]
  float* dv;            // [B, Smax, Hkv, D]
  int64_t Tq, Smax;
};

// Sum over the warp, the same value in every lane (a fixed butterfly: deterministic).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// dq of one (compact row, head) per warp: over the row's visible keys in order,
// p = 2^(s log2 e - lse log2 e), dS = p (dout . v - Delta), dq += dS k; dq = scale dq. The q
// and dout rows and dq live in shared memory ([3][D] floats per warp), each lane on the dims
// d = lane (mod 32) only, so the warp needs no barrier.
__global__ void simple_dq_kernel(const SimpleArgs a) {
  extern __shared__ float sbuf[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t item = int64_t(blockIdx.x) * a.warps + warp;
  if (item >= a.R * a.Hq) return;
  const int64_t r = item / a.Hq;
  const int h = int(item % a.Hq), kvh = h / a.G;
  float* sq = sbuf + int64_t(warp) * 3 * a.D;
  float* sdo = sq + a.D;
  float* acc = sdo + a.D;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t t = r - s.r0, row = s.q_start + t;
  const int64_t qo = a.q.offset(s.batch, row, h), oo = a.dout.offset(s.batch, row, h);
  for (int d = lane; d < a.D; d += 32) {
    sq[d] = load1(a.q.data, a.q.dt, qo + d);
    sdo[d] = load1(a.dout.data, a.dout.dt, oo + d);
    acc[d] = 0.f;
  }
  const float2 ld = a.ld[int64_t(h) * a.R + r];
  const int64_t n = visible_keys(s, t, a.causal);
  for (int64_t j = 0; j < n; j++) {
    const int64_t ko = a.k.offset(s.batch, s.k_start + j, kvh), vo = a.v.offset(s.batch, s.k_start + j, kvh);
    float sd = 0.f, pd = 0.f;
    for (int d = lane; d < a.D; d += 32) {
      sd = fmaf(sq[d], load1(a.k.data, a.k.dt, ko + d), sd);
      pd = fmaf(sdo[d], load1(a.v.data, a.v.dt, vo + d), pd);
    }
    sd = warp_sum(sd);
    pd = warp_sum(pd);
    const float p = ex2(fmaf(sd, a.sl2, -ld.x));  // 0 when lse = +inf
    const float ds = p * (pd - ld.y);
    for (int d = lane; d < a.D; d += 32) acc[d] = fmaf(ds, load1(a.k.data, a.k.dt, ko + d), acc[d]);
  }
  float* out = a.dq + ((int64_t(s.batch) * a.Tq + row) * a.Hq + h) * a.D;
  for (int d = lane; d < a.D; d += 32) out[d] = acc[d] * a.scale;
}

// dk and dv of one (key row, KV head) per warp: over the group's heads and, per head, the
// queries that see the key in order (causal: t >= j - q_pos), dv += p dout, dk += dS q;
// dk = scale dk. k and v rows and both sums in shared memory ([4][D] floats per warp).
__global__ void simple_dkdv_kernel(const SimpleArgs a) {
  extern __shared__ float sbuf[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const FlashTile tile = a.tiles[blockIdx.x / a.Hkv];
  const int kvh = int(blockIdx.x % a.Hkv);
  const DSeq s = a.seqs[tile.seq];
  const int64_t j = int64_t(tile.r0) + warp;
  if (j >= s.S) return;
  float* sk = sbuf + int64_t(warp) * 4 * a.D;
  float* sv = sk + a.D;
  float* ak = sv + a.D;
  float* av = ak + a.D;
  const int64_t ko = a.k.offset(s.batch, s.k_start + j, kvh), vo = a.v.offset(s.batch, s.k_start + j, kvh);
  for (int d = lane; d < a.D; d += 32) {
    sk[d] = load1(a.k.data, a.k.dt, ko + d);
    sv[d] = load1(a.v.data, a.v.dt, vo + d);
    ak[d] = av[d] = 0.f;
  }
  const int64_t tfirst = a.causal ? min(max(j - int64_t(s.q_pos), int64_t(0)), int64_t(s.T)) : 0;
  for (int g = 0; g < a.G; g++) {
    const int h = kvh * a.G + g;
    for (int64_t t = tfirst; t < s.T; t++) {
      const int64_t row = s.q_start + t;
      const int64_t qo = a.q.offset(s.batch, row, h), oo = a.dout.offset(s.batch, row, h);
      float sd = 0.f, pd = 0.f;
      for (int d = lane; d < a.D; d += 32) {
        sd = fmaf(sk[d], load1(a.q.data, a.q.dt, qo + d), sd);
        pd = fmaf(sv[d], load1(a.dout.data, a.dout.dt, oo + d), pd);
      }
      sd = warp_sum(sd);
      pd = warp_sum(pd);
      const float2 ld = a.ld[int64_t(h) * a.R + s.r0 + t];
      const float p = ex2(fmaf(sd, a.sl2, -ld.x));
      const float ds = p * (pd - ld.y);
      for (int d = lane; d < a.D; d += 32) {
        av[d] = fmaf(p, load1(a.dout.data, a.dout.dt, oo + d), av[d]);
        ak[d] = fmaf(ds, load1(a.q.data, a.q.dt, qo + d), ak[d]);
      }
    }
  }
  const int64_t off = ((int64_t(s.batch) * a.Smax + s.k_start + j) * a.Hkv + kvh) * a.D;
  for (int d = lane; d < a.D; d += 32) {
    a.dk[off + d] = ak[d] * a.scale;
    a.dv[off + d] = av[d];
  }
}

// Largest dynamic shared memory a block may ask for on this device.
size_t smem_optin() {
  static int v = -1;
  if (v < 0) {
    int dev = 0;
    TOPK_CUDA(cudaGetDevice(&dev));
    TOPK_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  }
  return size_t(v);
}

void simple_backward(const AttnParams& p, const SeqTable& st, const float2* ld) {
  // Warps per block: up to 8 while the rows fit in 48 KB (no opt-in), else fewer; a head dim
  // whose four rows outgrow one block's shared memory is refused.
  const size_t per_warp = size_t(4) * p.D * sizeof(float);
  TOPK_CHECK(per_warp <= smem_optin(), "attention_backward: head dim %d is too large for the CUDA backward", p.D);
  const int warps = int(std::clamp<size_t>(kDefaultBlockSmem / per_warp, 1, 8));
  SimpleArgs a;
  a.seqs = st.d;
  a.nseq = st.n;
  a.R = st.rows;
  a.Hq = p.Hq;
  a.Hkv = p.Hkv;
  a.G = p.group();
  a.D = p.D;
  a.warps = warps;
  a.scale = p.scale;
  a.sl2 = float(double(p.scale) * 1.4426950408889634);
  a.causal = p.causal;
  a.q = drows(p.q);
  a.k = drows(p.k);
  a.v = drows(p.v);
  a.dout = drows(p.dout);
  a.ld = ld;
  a.dq = p.dq;
  a.dk = p.dk;
  a.dv = p.dv;
  a.Tq = p.Tq;
  a.Smax = p.Smax;

  const int64_t items = st.rows * p.Hq;
  const int64_t qblocks = (items + warps - 1) / warps;
  TOPK_CHECK(qblocks < (int64_t(1) << 31), "attention_backward: too many rows for one launch");
  if (qblocks > 0) {
    const size_t smem = size_t(warps) * 3 * p.D * sizeof(float);
    allow_smem(simple_dq_kernel, smem);
    simple_dq_kernel<<<unsigned(qblocks), 32 * warps, smem, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
  }
  const std::vector<FlashTile> tiles = flash_tiles(p, warps, true);
  const int64_t kblocks = int64_t(tiles.size()) * p.Hkv;
  TOPK_CHECK(kblocks < (int64_t(1) << 31), "attention_backward: too many keys for one launch");
  if (kblocks > 0) {
    a.tiles = static_cast<const FlashTile*>(
        upload_table(kTabFlashK, tiles.data(), tiles.size() * sizeof(FlashTile)));
    const size_t smem = size_t(warps) * per_warp;
    allow_smem(simple_dkdv_kernel, smem);
    simple_dkdv_kernel<<<unsigned(kblocks), 32 * warps, smem, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
  }
}

// Batches the sequences cover (rows of the per-query and per-key arrays).
int64_t batches(const AttnParams& p) {
  int64_t B = 0;
  for (int i = 0; i < p.nseq; i++) B = std::max<int64_t>(B, p.seqs[i].batch + 1);
  return B;
}

}  // namespace

void launch_bwd_prep(const AttnParams& p, const SeqTable& st, float* ld, void* dout16, int dt16) {
  if (st.rows == 0) return;
  PrepArgs a;
  a.seqs = st.d;
  a.nseq = st.n;
  a.R = st.rows;
  a.Hq = p.Hq;
  a.D = p.D;
  a.Tq = p.Tq;
  a.o = drows(p.o);
  a.dout = drows(p.dout);
  a.lse = p.lse;
  a.ld = reinterpret_cast<float2*>(ld);
  a.dout16 = dout16;
  a.dt16 = dt16;
  const int64_t blocks = (st.rows * p.Hq + 7) / 8;
  TOPK_CHECK(blocks < (int64_t(1) << 31), "attention_backward: too many rows for one launch");
  bwd_prep_kernel<<<unsigned(blocks), 256, 0, stream()>>>(a);
  TOPK_CUDA_LAUNCH();
}

void attention_backward(const AttnParams& p) {
  SeqTable st = upload_seqs(p);
  const int64_t B = batches(p);
  // Key rows no sequence owns get 0 here; the kernels write all the others (when there is a
  // query row at all: without one, everything is 0).
  int64_t owned = 0;
  for (int i = 0; i < p.nseq; i++) owned += p.seqs[i].S;
  if (owned < B * p.Smax || st.rows == 0) {
    const size_t bytes = size_t(B * p.Smax * p.Hkv * p.D) * sizeof(float);
    TOPK_CUDA(cudaMemsetAsync(p.dk, 0, bytes, stream()));
    TOPK_CUDA(cudaMemsetAsync(p.dv, 0, bytes, stream()));
  }
  if (st.rows == 0) return;
  float* ld = static_cast<float*>(workspace(kWsLD, size_t(st.rows) * p.Hq * sizeof(float2)));
  if (!flash_backward_fits(p)) {
    launch_bwd_prep(p, st, ld, nullptr, 0);
    simple_backward(p, st, reinterpret_cast<const float2*>(ld));
    return;
  }
  // The tensor-core kernels read dout as 16-bit rows of q's dtype: a rounded copy when it is
  // another dtype (f32 gradients from the layers above) or its rows are not 16-byte aligned.
  const DRows dd = drows(p.dout);
  const int dt = dt_code(p.q.dtype);
  Rows d16 = p.dout;
  void* copy = nullptr;
  if (dd.dt != dt || !rows_aligned(dd)) {
    copy = workspace(kWsDout, size_t(B * p.Tq * p.Hq * p.D) * 2);
    d16.data = copy;
    d16.dtype = p.q.dtype;
    d16.sh = p.D;
    d16.st = int64_t(p.Hq) * p.D;
    d16.sb = p.Tq * d16.st;
  }
  launch_bwd_prep(p, st, ld, copy, dt);
  launch_flash_backward(p, st, ld, d16);
}

}  // namespace topk::cuda
