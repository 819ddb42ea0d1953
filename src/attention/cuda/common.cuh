// What every CUDA attention kernel shares: a call as kernels see it (dtype codes, sequence
// table, row and output strides, visible keys), the host-side context (cached sequence and
// table uploads, workspaces, SM count, the stream) and the launch helpers. By concern beside
// it: memory.cuh (loads, conversions, gathers, async copies), mma.cuh (tensor cores),
// reduce.cuh (warp and block reductions, histograms, scans). Kernels of one op live in its
// own .cu file.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "attention/params.h"
#include "core/cuda_check.cuh"

namespace topk::cuda {

// Dtype codes as kernels see them.
enum : int { kF32 = 0, kBF16 = 1, kF16 = 2, kF8 = 3 };  // kF8: E4M3 (core/fp8.h)
inline int dt_code(DType t) {
  return t == DType::f32 ? kF32 : t == DType::bf16 ? kBF16 : t == DType::f8e4m3 ? kF8 : kF16;
}

// One sequence as kernels see it: SeqDesc plus r0, its first compact query row (the prefix
// sum of T over the sequences before it). Compact rows number the queries of a call 0..R-1.
struct DSeq {
  int32_t batch, q_start, T, k_start, S, q_pos, r0;
};

// A [B, rows, H, D] tensor (unit stride over D), strides in elements.
struct DRows {
  const char* data;
  int dt, esize;
  int64_t sb, st, sh;
  __host__ __device__ int64_t offset(int64_t b, int64_t row, int64_t h) const {
    return b * sb + row * st + h * sh;
  }
};

inline DRows drows(const Rows& r) {
  DRows d;
  d.data = static_cast<const char*>(r.data);
  d.dt = dt_code(r.dtype);
  d.esize = int(dtype_size(r.dtype));
  d.sb = r.sb;
  d.st = r.st;
  d.sh = r.sh;
  return d;
}

// Where an attention op writes o ([B, Tq, Hq, D] strides in elements, any float dtype) and
// lse ([rows, Hq]).
struct DOut {
  void* o;
  int dt;
  int64_t sb, st, sh;
  float* lse;
  __host__ __device__ int64_t offset(int64_t b, int64_t row, int64_t h) const {
    return b * sb + row * st + h * sh;
  }
};

inline DOut dout(const AttnParams& p) {
  return DOut{p.o_data, dt_code(p.o.dtype), p.o.sb, p.o.st, p.o.sh, p.lse};
}

// 16-byte loads need 16-byte aligned rows: base and every stride.
inline bool rows_aligned(const DRows& r) {
  auto ok = [&](int64_t s) { return (s * r.esize) % 16 == 0; };
  return (reinterpret_cast<uintptr_t>(r.data) % 16) == 0 && ok(r.sb) && ok(r.st) && ok(r.sh);
}

// Uploaded sequence table of a call.
struct SeqTable {
  const DSeq* d = nullptr;
  int n = 0;
  int64_t rows = 0;   // R = sum of T
  int64_t max_T = 0;  // largest T
};

// Uploads the sequence table (skipped when it equals the last one uploaded).
SeqTable upload_seqs(const AttnParams& p);
// A cached device buffer per slot, grown as needed (never shrinks); contents undefined.
void* workspace(int slot, size_t bytes);
// The bytes the slot's buffer holds now (0 before its first use).
size_t workspace_size(int slot);
enum : int {
  kWsScores = 0, kWsRank, kWsPartial,
  kWsThr, kWsCand, kWsSelScores,  // threshold path of top-k attention
  kWsLD, kWsDout,                 // backward: (lse, Delta) per row and head, dout as 16-bit
  kWsSortTemp, kWsRuns,  // sparse backward: the key sort's temporary, the runs of the sorted
                         // keys (its per-entry arrays and sort buffers use kWsScores),
  kWsUsed,               // and each list's used entries with their prefix sums
  kWsCount
};

// A small host table (tile lists) in device memory, cached per slot like the sequence table:
// re-sent only when its bytes change, so that a training step's layers pay no copy (a copy
// from pageable memory waits for the stream).
const void* upload_table(int slot, const void* host, size_t bytes);
enum : int { kTabFlashQ = 0, kTabFlashK, kTabIndexer, kTabTopkTiles, kTabCount };

int num_sms();
// Whether the GPU runs the warpgroup-MMA kernels: they exist as sm_90a machine code only, so
// compute capability 9.0.
bool has_wgmma();
cudaStream_t stream();  // the stream all ops run on: topk::cuda_stream() (default: legacy)

// Compact row -> sequence index (binary search on r0).
__device__ __forceinline__ int seq_of_row(const DSeq* seqs, int nseq, int64_t r) {
  int lo = 0, hi = nseq - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (seqs[mid].r0 <= r) lo = mid; else hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ int64_t visible_keys(const DSeq& s, int64_t t, bool causal) {
  if (!causal) return s.S;
  int64_t n = int64_t(s.q_pos) + t + 1;
  return n < 0 ? 0 : (n > s.S ? s.S : n);
}

// Query row r (compact numbering) of a call as its kernels see it: the row's sequence s, its
// place t in that sequence, its row qrow in the [B, Tq] layout of q, o, lse and index rows,
// and the n keys it sees. Kernels take it apart: auto [s, t, qrow, n] = query_row(...).
struct QueryRow {
  DSeq s;
  int64_t t, qrow, n;
};
__device__ __forceinline__ QueryRow query_row(const DSeq* seqs, int nseq, int64_t r, int64_t Tq,
                                              bool causal) {
  QueryRow q;
  q.s = seqs[seq_of_row(seqs, nseq, r)];
  q.t = r - q.s.r0;
  q.qrow = int64_t(q.s.batch) * Tq + q.s.q_start + q.t;
  q.n = visible_keys(q.s, q.t, causal);
  return q;
}


// Launches kernel on stream() through cudaLaunchKernelEx: as clusters of `cluster` blocks
// along x when cluster > 0, and with pdl as a programmatic dependent of the kernel before it
// (it may start before that one ends, and must wait for what it reads).
template <class... P, class... A>
void launch_ex(void (*kernel)(P...), int64_t grid, int threads, size_t smem, int cluster, bool pdl,
               const A&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(grid));
  cfg.blockDim = dim3(unsigned(threads));
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream();
  cudaLaunchAttribute attrs[2];
  int n = 0;
  if (pdl) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n].val.programmaticStreamSerializationAllowed = 1;
    n++;
  }
  if (cluster > 0) {
    attrs[n].id = cudaLaunchAttributeClusterDimension;
    attrs[n].val.clusterDim.x = unsigned(cluster);
    attrs[n].val.clusterDim.y = 1;
    attrs[n].val.clusterDim.z = 1;
    n++;
  }
  cfg.attrs = attrs;
  cfg.numAttrs = unsigned(n);
  TOPK_CUDA(cudaLaunchKernelEx(&cfg, kernel, args...));
  TOPK_CUDA_LAUNCH();
}

// Raises a kernel's dynamic shared-memory limit to `bytes` (past the default 48 KiB) when an
// earlier call did not already raise it that far. Never lowers it: a call with a larger size
// (another dtype, another shape) may have come first.
void allow_smem_impl(const void* kernel, size_t bytes);
template <class... P>
void allow_smem(void (*kernel)(P...), size_t bytes) {
  allow_smem_impl(reinterpret_cast<const void*>(kernel), bytes);
}

// The most shared memory one block may opt into on sm_90 (H100, H200): the kernels' compile-time
// tile sizes are checked against it for every head dim they are built for.
constexpr size_t kMaxBlockSmem = 227 * 1024;
// Without the opt-in (and always for static __shared__ arrays) a block gets at most this much.
constexpr size_t kDefaultBlockSmem = 48 * 1024;

// Keys of a work unit are split into chunks of this many (multiples of the kernels' tiles).
constexpr int kTile = 128;

// Number of splits of an item's keys so that items * splits blocks fill whole waves.
int choose_splits(int64_t items, int64_t keys, int blocks_per_sm, int max_splits);

}  // namespace topk::cuda

// Dispatch on the compile-time head dim; anything else is a caller error.
#define TOPK_CUDA_HEAD_DIM_SWITCH(D, op, ...)                                               \
  switch (D) {                                                                               \
    case 64: { constexpr int kD = 64; __VA_ARGS__; break; }                                  \
    case 128: { constexpr int kD = 128; __VA_ARGS__; break; }                                \
    case 256: { constexpr int kD = 256; __VA_ARGS__; break; }                                \
    default: throw ::topk::Error(::topk::detail::format_error(                               \
        "%s: unsupported head dim %d on CUDA (64, 128 and 256 are built)", op, int(D)));     \
  }
