// Sparse attention backward over given indices [B, T, Hsel, K] on CUDA, deterministic with no
// floating-point atomics. dk and dv start at 0; then per range of query rows (sized so that the
// per-entry arrays fit the score-row workspace as the forward left it, at least
// workspace_budget(), 256 MiB by default):
//   used     first, for the whole call: each list's entries up to its last valid one (a
//            forward's lists hold the row's budget, then -1 up to the longest row's budget:
//            about half the entries of a causal step are padding) and their prefix sums, read
//            back to size the ranges by the entries they use;
//   entries  a block per (row, KV head), KV head major: for every used list entry,
//            p = exp(s - lse) and dS = scale p (dout . v - Delta), to [rows, Hq, K] arrays
//            (invalid entries: 0; entries past a list's used ones are left unwritten);
//   dQ       per (row, head), dq = sum dS k: with per-head lists, in the entry kernel from the
//            k rows it has loaded (each slot's entries in order, then the slots in order);
//            with group-shared lists, a kernel of its own over the K entries in slot order;
//   invert   each used list entry's key id in the range's key window, KV head major (KV
//            head * window + key row in it; invalid entries get a sentinel past them all, and
//            the sort covers only the window's bits), packed in entry order, then a stable
//            radix sort (CUB) of (key id, entry) pairs: each key's entries form a run in entry
//            order;
//   dK/dV    per key id of the window, one KV head's keys after another (TPR threads, 8 dims
//            each) dk += dS q and dv += p dout over its run in order; runs longer than kPiece
//            entries (a key every query selects) are first summed in pieces of kPiece by
//            separate thread groups, then the pieces in order, so that no thread group walks a
//            long run alone.
// Every summation order is fixed by the inputs: runs are bit-identical. Invalid indices
// (< 0 or >= S_b) are skipped, duplicates count once per appearance, and a row with no valid
// entry (lse = +inf) passes no gradient, as in ref::sparse_backward.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "attention/cuda/common.cuh"
#include "attention/cuda/memory.cuh"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kHeadChunk = 8;  // heads of a group whose q and dout rows sit in shared memory
constexpr int kPiece = 64;     // entries of a key summed by one thread group, at most

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
  const int64_t* used;     // [rows * Hsel + 1]: used entries of each list of the call (then 0)
  const int64_t* used_at;  // [rows * Hsel + 1]: their exclusive prefix sums
  const float2* ld;        // [Hq, R]: (lse log2 e, Delta)
  float* P;                // [rows, Hq, K]
  float* dS;               // [rows, Hq, K], scale folded in
  float* dq;               // [B, Tq, Hq, D]
  float* dk;               // [B, Smax, Hkv, D]
  float* dv;               // [B, Smax, Hkv, D]
  int2* rowinfo;           // [rows]: (batch, row of q) of each row of the range
  uint32_t* keys;          // [E] key id per list entry of the range
  int32_t* vals;           // [E] entry index
  const uint32_t* skeys;   // [E] sorted
  const int32_t* svals;    // [E] entries in key order
  int32_t* run_lo;         // [nwin + 1] first sorted position of each key id of the window
  int32_t* run_n;          // [nwin + 1] its entries
  int32_t* npieces;        // [nwin + 1] its pieces (0 for runs of at most kPiece)
  int32_t* pstart;         // [nwin + 1] its first piece (exclusive scan of npieces)
  float* partial;          // [pieces, 2, D] sums of dk, dv over each piece
  int64_t Eall;            // rows of the range * Hsel * K: the list entries, used or not
  int64_t E;               // the used ones: the entries sorted
  int64_t nkeys;           // B * Smax * Hkv: the (key row, KV head) pairs of the call
  // The range's key window: key rows [krow0, krow0 + W) of the [B * Smax] rows, those of the
  // sequences its query rows belong to. A key's id is kvh * W + (its row - krow0), KV head
  // major, so that the per-key kernels walk one KV head's keys at a time; nwin = Hkv * W ids,
  // and nwin itself is the sentinel of invalid entries.
  int64_t krow0, W, nwin;
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
// At D = 256 a key row is a whole warp, and with no bound ptxas settled on 48 registers and a
// 4-byte spill: 5 blocks an SM (at most 51 registers) got the same 48 registers and no spill,
// until reading each list's used entries brought a 4-byte spill back (ptxas -v; not measured
// against other bounds). (A minimum of 0 is no bound, as 64 and 128 have always been built.)
template <int D>
__global__ void __launch_bounds__(kThreads, D <= 128 ? 0 : 5) sparse_entry_kernel(const SparseBwdArgs a,
                                                                                  int64_t nr) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  __shared__ __align__(16) float sq[kHeadChunk][D];
  __shared__ __align__(16) float sdo[kHeadChunk][D];
  __shared__ float2 sld[kHeadChunk];
  __shared__ __align__(16) float sdq[SLOTS][D];  // per-head lists: each slot's part of dq
  static_assert(sizeof(sq) + sizeof(sdo) + sizeof(sld) + sizeof(sdq) <= kDefaultBlockSmem,
                "static shared memory of a block is at most 48 KiB");
  static_assert(TPR <= 32 && kThreads % TPR == 0, "a key row's threads are lanes of one warp");
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  // KV head major: the blocks in flight gather the k and v rows of one KV head (16 MiB of a
  // 32K-key bf16 sequence), not of all of them.
  const int kvh = int(blockIdx.x / nr);
  const int64_t rr = blockIdx.x % nr;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t row = s.q_start + (r - s.r0), qrow = int64_t(s.batch) * a.Tq + row;
  const bool per_head = a.Hsel == a.Hq;
  const int64_t kbase = a.k.offset(s.batch, s.k_start, kvh) + dg * 8;
  const int64_t vbase = a.v.offset(s.batch, s.k_start, kvh) + dg * 8;
  float dqa[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int c0 = 0; c0 < a.G; c0 += kHeadChunk) {
    const int nh = min(kHeadChunk, a.G - c0), h0 = kvh * a.G + c0;
    __syncthreads();  // the previous chunk's rows are no longer read
    // 8 dims a thread, q and dout rows at once.
    for (int e = tid; e < 2 * nh * TPR; e += kThreads) {
      const int which = e / (nh * TPR), hl = e % (nh * TPR) / TPR, g = e % TPR;
      const DRows& src = which ? a.dout : a.q;
      float x[8];
      load8(src, src.offset(s.batch, row, h0 + hl) + g * 8, which ? a.ovec : a.qvec, x);
      float* dst = which ? &sdo[hl][g * 8] : &sq[hl][g * 8];
      *reinterpret_cast<float4*>(dst) = make_float4(x[0], x[1], x[2], x[3]);
      *reinterpret_cast<float4*>(dst + 4) = make_float4(x[4], x[5], x[6], x[7]);
    }
    if (tid < nh) sld[tid] = a.ld[int64_t(h0 + tid) * a.R + r];
    __syncthreads();
    // Per-head lists: one per head of the chunk; group-shared: one list for all of them.
    const int nlists = per_head ? nh : 1;
    for (int li = 0; li < nlists; li++) {
      const int hb = per_head ? li : 0, he = per_head ? li + 1 : nh;
      const int hs = per_head ? h0 + li : kvh;
      const int32_t* list = a.idx + (qrow * a.Hsel + hs) * a.K;
      // Entries past the list's used ones get no P or dS (no later kernel reads an invalid
      // entry's).
      const int n_used = int(a.used[r * a.Hsel + hs]);
      // Each slot's next index is read a step ahead, so that the k and v loads do not wait
      // on it.
      int32_t jn = slot < n_used ? list[slot] : -1;
      for (int64_t i0 = 0; i0 < n_used; i0 += SLOTS) {  // uniform over the block
        const int64_t i = i0 + slot;
        const int32_t j = jn;
        jn = i + SLOTS < n_used ? list[i + SLOTS] : -1;
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
          // Butterfly sums: every thread of the group ends with the same bits.
#pragma unroll
          for (int off = TPR / 2; off >= 1; off >>= 1) {
            sd += __shfl_xor_sync(0xffffffffu, sd, off);
            pd += __shfl_xor_sync(0xffffffffu, pd, off);
          }
          const float2 x = sld[hl];
          const float pv = valid ? ex2(fmaf(sd, a.sl2, -x.x)) : 0.f;  // 0 when lse = +inf
          const float ds = a.scale * pv * (pd - x.y);
          if (dg == 0 && i < n_used) {
            const int64_t e = (rr * a.Hq + h0 + hl) * a.K + i;
            a.P[e] = pv;
            a.dS[e] = ds;
          }
          if (per_head) {
            const float w = valid ? ds : 0.f;  // an invalid slot's ds need not be 0 (Delta)
#pragma unroll
            for (int c = 0; c < 8; c++) dqa[c] = fmaf(w, kx[c], dqa[c]);
          }
        }
      }
      if (per_head) {
        // dq of this list's head: each slot's sum, then the slots in order.
#pragma unroll
        for (int c = 0; c < 8; c++) {
          sdq[slot][dg * 8 + c] = dqa[c];
          dqa[c] = 0.f;
        }
        __syncthreads();
        for (int d = tid; d < D; d += kThreads) {
          float acc = 0.f;
          for (int sl = 0; sl < SLOTS; sl++) acc += sdq[sl][d];
          a.dq[(qrow * a.Hq + h0 + li) * D + d] = acc;
        }
        __syncthreads();
      }
    }
  }
}

// dq of (row, head) for group-shared lists (per-head lists get dq from the entry kernel): TPR
// threads per head, 8 dims each, the K entries in slot order, U rows of k in flight. Blocks go
// head block major, as the entry kernel's: the blocks in flight gather few KV heads' k rows.
template <int D>
__global__ void __launch_bounds__(kThreads) sparse_dq_kernel(const SparseBwdArgs a, int64_t nr) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR, U = 4;
  const int tid = threadIdx.x, dg = tid % TPR, slot = tid / TPR;
  const int64_t rr = blockIdx.x % nr;
  const int h = int(blockIdx.x / nr) * SLOTS + slot;
  if (h >= a.Hq) return;
  const int kvh = h / a.G;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + (r - s.r0);
  const int hs = a.Hsel == a.Hq ? h : kvh;
  const int32_t* list = a.idx + (qrow * a.Hsel + hs) * a.K;
  const int64_t n_used = a.used[r * a.Hsel + hs];
  const float* w = a.dS + (rr * a.Hq + h) * a.K;
  const int64_t kbase = a.k.offset(s.batch, s.k_start, kvh) + dg * 8;
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int64_t i0 = 0; i0 < n_used; i0 += U) {
    float x[U][8], wu[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int64_t i = i0 + u;
      const int32_t j = i < n_used ? list[i] : -1;
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

// (batch, row of q) of each row of the range, so that the per-entry kernels need no search.
__global__ void sparse_rows_kernel(const SparseBwdArgs a, int64_t nr) {
  const int64_t rr = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (rr >= nr) return;
  const int64_t r = a.r0 + rr;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  a.rowinfo[rr] = make_int2(s.batch, int(s.q_start + (r - s.r0)));
}

// Each list's used entries: 1 + the position of its last valid index (0 for none), a warp per
// list of the call; the thread past the last list writes the 0 that ends them for the scan.
__global__ void sparse_used_kernel(const SparseBwdArgs a, int64_t nlists, int64_t* used) {
  const int64_t L = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (L > nlists) return;
  if (L == nlists) {
    if (lane == 0) used[L] = 0;
    return;
  }
  const int64_t r = L / a.Hsel;
  const int hs = int(L % a.Hsel);
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + (r - s.r0);
  const int32_t* list = a.idx + (qrow * a.Hsel + hs) * a.K;
  int n = 0;
  for (int64_t i = lane; i < a.K; i += 32) {
    const int32_t j = list[i];
    if (j >= 0 && j < s.S) n = int(i) + 1;
  }
  n = __reduce_max_sync(0xffffffffu, n);
  if (lane == 0) used[L] = n;
}

// The prefix sums at the first list of each row (and past the last): the ranges' sizes.
__global__ void sparse_row_used_kernel(const int64_t* used_at, int64_t rows, int Hsel, int64_t* out) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r <= rows) out[r] = used_at[r * Hsel];
}

// The key id of every used list entry of the range (the sentinel nwin for invalid ones) and
// its index, packed in entry order, for the sort.
__global__ void sparse_keys_kernel(const SparseBwdArgs a) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= a.Eall) return;
  const uint32_t per_row = uint32_t(a.Hsel * a.K), ue = uint32_t(e);
  const uint32_t rr = ue / per_row, rem = ue % per_row;
  const int hs = int(rem / uint32_t(a.K));
  const int64_t i = rem % uint32_t(a.K);
  const int64_t r = a.r0 + rr, L = r * a.Hsel + hs;
  if (i >= a.used[L]) return;
  const DSeq s = a.seqs[seq_of_row(a.seqs, a.nseq, r)];
  const int64_t qrow = int64_t(s.batch) * a.Tq + s.q_start + (r - s.r0);
  const int32_t j = a.idx[(qrow * a.Hsel + hs) * a.K + i];
  const int kvh = a.Hsel == a.Hq ? hs / a.G : hs;
  const int64_t at = a.used_at[L] - a.used_at[a.r0 * a.Hsel] + i;
  a.keys[at] = j >= 0 && j < s.S
                   ? uint32_t(kvh * a.W + (int64_t(s.batch) * a.Smax + s.k_start + j - a.krow0))
                   : uint32_t(a.nwin);
  a.vals[at] = int32_t(e);
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

// The run of every key id of the range's window in the sorted keys: its start, its length, and
// its pieces (runs longer than kPiece entries are summed in pieces of kPiece, then the pieces
// in order: a key that every query selects, an attention sink, would otherwise be one thread
// group's long serial loop). Thread nwin writes the 0 that ends the piece counts for the scan.
__global__ void sparse_runs_kernel(const SparseBwdArgs a) {
  const int64_t kid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (kid > a.nwin) return;
  if (kid == a.nwin) {
    a.npieces[kid] = 0;
    return;
  }
  const int64_t lo = lower_bound(a.skeys, a.E, uint32_t(kid));
  const int64_t hi = lower_bound(a.skeys, a.E, uint32_t(kid + 1));
  a.run_lo[kid] = int32_t(lo);
  a.run_n[kid] = int32_t(hi - lo);
  a.npieces[kid] = hi - lo > kPiece ? int32_t((hi - lo + kPiece - 1) / kPiece) : 0;
}

// ak += dS q, av += p dout over the entries at sorted positions [p0, p1), in order; 8 dims
// (dg) per thread, the TPR threads of a group together. Each entry's addresses hang on a chain
// of loads (its sorted position, then its row's (batch, row), then q, dout, P and dS), so the
// group resolves TPR entries at once, a lane each, and passes each entry's addresses round
// by shuffles: one chain per TPR entries instead of one per entry. The sums are the same, in
// the same order.
template <int TPR>
__device__ __forceinline__ void add_entries(const SparseBwdArgs& a, int64_t p0, int64_t p1, int dg,
                                            float (&ak)[8], float (&av)[8]) {
  const uint32_t per_row = uint32_t(a.Hsel * a.K), K = uint32_t(a.K);
  const bool per_head = a.Hsel == a.Hq;
  const int nh = per_head ? 1 : a.G;
  // The group's lanes of its warp (the groups of a warp walk runs of different lengths).
  const unsigned group = TPR == 32 ? 0xffffffffu : ((1u << TPR) - 1u) << ((threadIdx.x & 31) & ~(TPR - 1));
  for (int64_t c0 = p0; c0 < p1; c0 += TPR) {
    // Entry c0 + dg: the offsets of its q and dout rows and its P / dS slot, at its first head.
    long long qo = 0, oo = 0, ew = 0;
    if (c0 + dg < p1) {
      const uint32_t e = uint32_t(a.svals[c0 + dg]);
      const uint32_t rr = e / per_row, rem = e % per_row;
      const uint32_t hs = rem / K, i = rem % K;
      const int2 ri = a.rowinfo[rr];  // (batch, row of q)
      const int h0 = per_head ? int(hs) : int(hs) * a.G;
      qo = a.q.offset(ri.x, ri.y, h0);
      oo = a.dout.offset(ri.x, ri.y, h0);
      ew = (int64_t(rr) * a.Hq + h0) * a.K + i;
    }
    const int n = p1 - c0 < TPR ? int(p1 - c0) : TPR;
#pragma unroll 4
    for (int u = 0; u < n; u++) {
      const int64_t q0 = __shfl_sync(group, qo, u, TPR), o0 = __shfl_sync(group, oo, u, TPR);
      const int64_t e0 = __shfl_sync(group, ew, u, TPR);
      for (int hh = 0; hh < nh; hh++) {
        const float wd = a.dS[e0 + hh * a.K], wp = a.P[e0 + hh * a.K];
        float qx[8], ox[8];
        load8(a.q, q0 + hh * a.q.sh + dg * 8, a.qvec, qx);
        load8(a.dout, o0 + hh * a.dout.sh + dg * 8, a.ovec, ox);
#pragma unroll
        for (int c = 0; c < 8; c++) {
          ak[c] = fmaf(wd, qx[c], ak[c]);
          av[c] = fmaf(wp, ox[c], av[c]);
        }
      }
    }
  }
}

// The pieces of the long runs: TPR threads per piece, its kPiece entries' sums to
// partial [pieces, 2, D]. Launched for an upper bound of the pieces; the others leave.
template <int D>
__global__ void __launch_bounds__(kThreads) sparse_pieces_kernel(const SparseBwdArgs a) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  const int dg = threadIdx.x % TPR;
  const int64_t pc = int64_t(blockIdx.x) * SLOTS + threadIdx.x / TPR;
  if (pc >= a.pstart[a.nwin]) return;
  // The key whose pieces hold pc: the last kid with pstart[kid] <= pc (kids without pieces
  // share their pstart with the next kid, so the last one is the one with pieces).
  int64_t lo = 0, hi = a.nwin;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) >> 1;
    if (a.pstart[mid] <= pc) lo = mid;
    else hi = mid - 1;
  }
  const int64_t p0 = a.run_lo[lo] + (pc - a.pstart[lo]) * kPiece;
  const int64_t p1 = min(p0 + kPiece, int64_t(a.run_lo[lo]) + a.run_n[lo]);
  float ak[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, av[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  add_entries<TPR>(a, p0, p1, dg, ak, av);
  float* out = a.partial + pc * 2 * D + dg * 8;
  *reinterpret_cast<float4*>(out) = make_float4(ak[0], ak[1], ak[2], ak[3]);
  *reinterpret_cast<float4*>(out + 4) = make_float4(ak[4], ak[5], ak[6], ak[7]);
  *reinterpret_cast<float4*>(out + D) = make_float4(av[0], av[1], av[2], av[3]);
  *reinterpret_cast<float4*>(out + D + 4) = make_float4(av[4], av[5], av[6], av[7]);
}

// dk, dv of a key id of the range's window (KV head major, SparseBwdArgs::krow0): TPR threads,
// 8 dims each, add to what is there (0 from the memset before the first range) the key's
// entries in order, or its pieces' sums in order.
template <int D>
__global__ void __launch_bounds__(kThreads) sparse_dkdv_kernel(const SparseBwdArgs a) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  const int dg = threadIdx.x % TPR;
  const int64_t kid = int64_t(blockIdx.x) * SLOTS + threadIdx.x / TPR;
  if (kid >= a.nwin || a.run_n[kid] == 0) return;
  float ak[8], av[8];
  const int64_t at = ((a.krow0 + kid % a.W) * a.Hkv + kid / a.W) * D + dg * 8;  // [B, Smax, Hkv, D]
  float* pk = a.dk + at;
  float* pv = a.dv + at;
#pragma unroll
  for (int e = 0; e < 8; e++) {
    ak[e] = pk[e];
    av[e] = pv[e];
  }
  const int np = a.npieces[kid];
  if (np == 0) {
    add_entries<TPR>(a, a.run_lo[kid], int64_t(a.run_lo[kid]) + a.run_n[kid], dg, ak, av);
  } else {
    const float* part = a.partial + int64_t(a.pstart[kid]) * 2 * D + dg * 8;
    for (int i = 0; i < np; i++, part += 2 * D) {
#pragma unroll
      for (int e = 0; e < 8; e++) {
        ak[e] += part[e];
        av[e] += part[D + e];
      }
    }
  }
  *reinterpret_cast<float4*>(pk) = make_float4(ak[0], ak[1], ak[2], ak[3]);
  *reinterpret_cast<float4*>(pk + 4) = make_float4(ak[4], ak[5], ak[6], ak[7]);
  *reinterpret_cast<float4*>(pv) = make_float4(av[0], av[1], av[2], av[3]);
  *reinterpret_cast<float4*>(pv + 4) = make_float4(av[4], av[5], av[6], av[7]);
}

// [lo, lo + W): the key rows (of the [B * Smax] rows) that query rows [r0, r0 + nr) can
// select, those of the sequences the rows belong to. The per-key kernels of a range run over
// this window alone: a range of a long batch touches one sequence of many, and launching them
// over every key of the batch in every range cost more than their work.
void key_window(const SeqDesc* seqs, int nseq, int64_t Smax, int64_t r0, int64_t nr, int64_t& lo,
                int64_t& W) {
  lo = INT64_MAX;
  int64_t hi = 0, rs = 0;
  for (int i = 0; i < nseq; rs += seqs[i].T, i++) {
    if (rs + seqs[i].T <= r0 || rs >= r0 + nr || seqs[i].S == 0) continue;
    const int64_t first = int64_t(seqs[i].batch) * Smax + seqs[i].k_start;
    lo = std::min(lo, first);
    hi = std::max(hi, first + int64_t(seqs[i].S));
  }
  if (hi <= lo) lo = hi = 0;
  W = hi - lo;
}

// The ranges of query rows, [starts[i], starts[i + 1]): each as many rows as fit room bytes (at
// least one), counting per row P and dS per head and its entry offsets, and per used entry two
// buffers each of keys and entries and at most 2 / kPiece pieces of 2 D partial sums; and at
// most 2^31 - 1 list entries, used or not (an entry's index is an int32).
std::vector<int64_t> row_ranges(const std::vector<int64_t>& used_at_row, int64_t Hq, int64_t Hsel,
                                int64_t K, int D, int64_t room) {
  const int64_t rows = int64_t(used_at_row.size()) - 1;
  const int64_t per_row = Hq * K * 8 + 8, per_entry = 16 + 16 * D / kPiece;
  const int64_t max_rows = std::max<int64_t>(1, ((int64_t(1) << 31) - 1) / std::max<int64_t>(1, Hsel * K));
  std::vector<int64_t> starts{0};
  for (int64_t r0 = 0, r1 = 0; r0 < rows; r0 = r1, starts.push_back(r1)) {
    r1 = r0 + 1;
    while (r1 < rows && r1 - r0 < max_rows &&
           (r1 + 1 - r0) * per_row + (used_at_row[r1 + 1] - used_at_row[r0]) * per_entry <= room)
      r1++;
  }
  return starts;
}

template <int D>
void run_sparse_backward(SparseBwdArgs a, int64_t rows, const SeqDesc* seqs) {
  constexpr int TPR = D / 8, SLOTS = kThreads / TPR;
  // Each list's used entries and their prefix sums, for the whole call; the sums at each row's
  // first list come back to the host, which cuts the rows into ranges by what they use.
  const int64_t nlists = rows * a.Hsel;
  int64_t* used = static_cast<int64_t*>(workspace(kWsUsed, size_t(2 * (nlists + 1) + rows + 1) * 8));
  int64_t* used_at = used + (nlists + 1);
  int64_t* used_at_row = used_at + (nlists + 1);
  a.used = used;
  a.used_at = used_at;
  {
    const int64_t threads = (nlists + 1) * 32;
    TOPK_CHECK((threads + 255) / 256 < (int64_t(1) << 31), "sparse_attention_backward: too many lists");
    sparse_used_kernel<<<unsigned((threads + 255) / 256), 256, 0, stream()>>>(a, nlists, used);
    TOPK_CUDA_LAUNCH();
    size_t scan_temp = 0;
    TOPK_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp, used, used_at, nlists + 1, stream()));
    void* tmp = workspace(kWsSortTemp, scan_temp);
    TOPK_CUDA(cub::DeviceScan::ExclusiveSum(tmp, scan_temp, used, used_at, nlists + 1, stream()));
    TOPK_CUDA_LAUNCH();
    sparse_row_used_kernel<<<unsigned((rows + 1 + 255) / 256), 256, 0, stream()>>>(used_at, rows, a.Hsel,
                                                                                   used_at_row);
    TOPK_CUDA_LAUNCH();
  }
  std::vector<int64_t> host_used(size_t(rows + 1));
  TOPK_CUDA(cudaMemcpyAsync(host_used.data(), used_at_row, host_used.size() * 8, cudaMemcpyDeviceToHost,
                            stream()));
  TOPK_CUDA(cudaStreamSynchronize(stream()));
  // The per-range arrays go in the score-row workspace, which a training step's top-k forward
  // leaves idle at up to score_rows_budget(): ranges fill what it holds (at least
  // workspace_budget()), so they cost no new memory, and fewer ranges mean fewer passes of the
  // per-range kernels.
  const int64_t room = int64_t(std::min(score_rows_budget(),
                                        std::max(workspace_budget(), workspace_size(kWsScores))));
  const std::vector<int64_t> starts = row_ranges(host_used, a.Hq, a.Hsel, a.K, D, room);
  const int nhb = (a.Hq + SLOTS - 1) / SLOTS;
  TOPK_CHECK((a.nkeys + SLOTS - 1) / SLOTS < (int64_t(1) << 31),
             "sparse_attention_backward: too many keys for one launch");
  // Per key id of a window: run start, run length, pieces, first piece (at most nkeys + 1).
  int32_t* runs = static_cast<int32_t*>(workspace(kWsRuns, size_t(a.nkeys + 1) * 16));
  a.run_lo = runs;
  a.run_n = runs + (a.nkeys + 1);
  a.npieces = runs + 2 * (a.nkeys + 1);
  a.pstart = runs + 3 * (a.nkeys + 1);
  // Every range adds to dk and dv, the first to zeros.
  TOPK_CUDA(cudaMemsetAsync(a.dk, 0, size_t(a.nkeys) * D * sizeof(float), stream()));
  TOPK_CUDA(cudaMemsetAsync(a.dv, 0, size_t(a.nkeys) * D * sizeof(float), stream()));
  for (size_t ri = 0; ri + 1 < starts.size(); ri++) {
    const int64_t r0 = starts[ri], nr = starts[ri + 1] - r0;
    a.r0 = r0;
    a.Eall = nr * a.Hsel * a.K;
    a.E = host_used[size_t(r0 + nr)] - host_used[size_t(r0)];
    TOPK_CHECK(a.Eall < (int64_t(1) << 31) && nr * a.Hkv < (int64_t(1) << 31) && nr * nhb < (int64_t(1) << 31),
               "sparse_attention_backward: %lld index entries in one range, more than 2^31",
               (long long)a.Eall);
    const int64_t max_pieces = 2 * (a.E / kPiece) + 1;
    const size_t entry_bytes = (size_t(nr * a.Hq * a.K) * 8 + size_t(nr) * 8 + 255) / 256 * 256;
    char* entry = static_cast<char*>(workspace(
        kWsScores, entry_bytes + size_t(a.E) * 16 + size_t(max_pieces) * 2 * D * 4));
    a.P = reinterpret_cast<float*>(entry);
    a.dS = a.P + nr * a.Hq * a.K;
    a.rowinfo = reinterpret_cast<int2*>(a.dS + nr * a.Hq * a.K);
    sparse_rows_kernel<<<unsigned((nr + 255) / 256), 256, 0, stream()>>>(a, nr);
    TOPK_CUDA_LAUNCH();
    sparse_entry_kernel<D><<<unsigned(nr * a.Hkv), kThreads, 0, stream()>>>(a, nr);
    TOPK_CUDA_LAUNCH();
    if (a.Hsel != a.Hq) {
      sparse_dq_kernel<D><<<unsigned(nr * nhb), kThreads, 0, stream()>>>(a, nr);
      TOPK_CUDA_LAUNCH();
    }
    key_window(seqs, a.nseq, a.Smax, r0, nr, a.krow0, a.W);
    a.nwin = a.W * a.Hkv;
    if (a.E == 0 || a.nwin == 0) continue;  // no entries: dk, dv keep what they have
    const int64_t nwin = a.nwin;
    int end_bit = 1;
    while ((int64_t(1) << end_bit) <= nwin) end_bit++;  // the sentinel nwin must fit too
    char* sort = entry + entry_bytes;
    uint32_t* k0 = reinterpret_cast<uint32_t*>(sort);
    int32_t* v0 = reinterpret_cast<int32_t*>(sort + size_t(a.E) * 8);
    a.partial = reinterpret_cast<float*>(sort + size_t(a.E) * 16);
    a.keys = k0;
    a.vals = v0;
    sparse_keys_kernel<<<unsigned((a.Eall + 255) / 256), 256, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
    cub::DoubleBuffer<uint32_t> keys(k0, k0 + a.E);
    cub::DoubleBuffer<int32_t> vals(v0, v0 + a.E);
    size_t sort_temp = 0, scan_temp = 0;
    TOPK_CUDA(cub::DeviceRadixSort::SortPairs(nullptr, sort_temp, keys, vals, int(a.E), 0, end_bit, stream()));
    TOPK_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp, a.npieces, a.pstart,
                                            int(nwin + 1), stream()));
    void* tmp = workspace(kWsSortTemp, std::max(sort_temp, scan_temp));
    TOPK_CUDA(cub::DeviceRadixSort::SortPairs(tmp, sort_temp, keys, vals, int(a.E), 0, end_bit, stream()));
    TOPK_CUDA_LAUNCH();
    a.skeys = keys.Current();
    a.svals = vals.Current();
    sparse_runs_kernel<<<unsigned((nwin + 1 + 255) / 256), 256, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
    TOPK_CUDA(cub::DeviceScan::ExclusiveSum(tmp, scan_temp, a.npieces, a.pstart,
                                            int(nwin + 1), stream()));
    TOPK_CUDA_LAUNCH();
    sparse_pieces_kernel<D><<<unsigned((max_pieces + SLOTS - 1) / SLOTS), kThreads, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
    sparse_dkdv_kernel<D><<<unsigned((nwin + SLOTS - 1) / SLOTS), kThreads, 0, stream()>>>(a);
    TOPK_CUDA_LAUNCH();
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
      run_sparse_backward<kD>(a, st.rows, p.seqs));
}

}  // namespace topk::cuda
