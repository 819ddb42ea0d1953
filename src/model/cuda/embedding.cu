// Token embedding lookup and its gradient on CUDA. The gradient sums the rows of each token in the
// order of their positions, through a CSR built on the host from the ids it already has: one
// block per distinct token, no float atomics, the same bits on every run (and the same bits as
// the CPU op, which adds the rows into dtable in that order too).
#include <algorithm>
#include <numeric>
#include <vector>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

template <int W>
__global__ void embed_fwd(F out, F table, const int32_t* tokens, int64_t N, int64_t H) {
  // out [N, H] f32, table [V, H], tokens [N]
  const int64_t c = pack_col<W>();
  if (c >= H) return;
  TOPK_ROW_LOOP(n, N) {
    float v[W];
    load<W>(table, int64_t(tokens[n]) * H + c, v);
    store<W>(out, n * H + c, v);
  }
}

// Block b owns distinct token ids[b], whose rows of dout are rows[off[b] .. off[b+1]) in
// increasing n. Each thread adds them, in that order, onto its columns of dtable; four rows are
// loaded before they are added, so a frequent token's long list is not one load at a time.
template <int W>
__global__ void embed_bwd(F dtable, F dout, const int32_t* ids, const int32_t* off,
                          const int32_t* rows, int64_t H) {  // dtable [V, H], dout [N, H], f32
  const int64_t t = ids[blockIdx.x];
  const int32_t r0 = off[blockIdx.x], r1 = off[blockIdx.x + 1];
  for (int64_t c = int64_t(threadIdx.x) * W; c < H; c += int64_t(blockDim.x) * W) {
    float s[W];
    load<W>(dtable, t * H + c, s);
    int32_t r = r0;
    for (; r + 4 <= r1; r += 4) {
      float v[4][W];
#pragma unroll
      for (int j = 0; j < 4; j++) load<W>(dout, int64_t(rows[r + j]) * H + c, v[j]);
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int k = 0; k < W; k++) s[k] += v[j][k];
    }
    for (; r < r1; r++) {
      float v[W];
      load<W>(dout, int64_t(rows[r]) * H + c, v);
#pragma unroll
      for (int k = 0; k < W; k++) s[k] += v[k];
    }
    store<W>(dtable, t * H + c, s);
  }
}

}  // namespace

void embedding_forward(const TensorView& out, const TensorView& table, const TensorView& tokens) {
  const int64_t N = tokens.numel(), H = cols_of(table);
  if (N == 0 || H == 0) return;
  const int32_t* tk = tokens.ptr<int32_t>();
  if (vec8(H, {out.data, table.data})) {
    const RowLaunch l = row_launch(N, H / 8);
    embed_fwd<8><<<l.grid, l.block, 0, stream()>>>(fview(out), fview(table), tk, N, H);
  } else {
    const RowLaunch l = row_launch(N, H);
    embed_fwd<1><<<l.grid, l.block, 0, stream()>>>(fview(out), fview(table), tk, N, H);
  }
  TOPK_CUDA_LAUNCH();
}

void embedding_backward(const TensorView& dtable, const TensorView& dout,
                        std::span<const int32_t> tokens) {
  const int64_t N = int64_t(tokens.size()), H = cols_of(dtable);
  if (N == 0 || H == 0) return;
  TOPK_CHECK(N < (int64_t(1) << 31), "ops::embedding_backward: %lld rows", (long long)N);
  // Positions sorted by token, stable: each token's rows stay in increasing n.
  std::vector<int32_t> rows(static_cast<size_t>(N));
  std::iota(rows.begin(), rows.end(), 0);
  std::stable_sort(rows.begin(), rows.end(),
                   [&](int32_t a, int32_t b) { return tokens[size_t(a)] < tokens[size_t(b)]; });
  std::vector<int32_t> ids, off;
  for (int64_t i = 0; i < N; i++) {
    const int32_t t = tokens[size_t(rows[size_t(i)])];
    if (ids.empty() || ids.back() != t) ids.push_back(t), off.push_back(int32_t(i));
  }
  off.push_back(int32_t(N));
  // One upload: ids [U], off [U + 1], rows [N].
  std::vector<int32_t> csr;
  csr.reserve(ids.size() + off.size() + rows.size());
  csr.insert(csr.end(), ids.begin(), ids.end());
  csr.insert(csr.end(), off.begin(), off.end());
  csr.insert(csr.end(), rows.begin(), rows.end());
  auto* d = static_cast<int32_t*>(scratch_bytes(kSlotCsr, csr.size() * 4));
  // Stream order puts the copy after the kernels that read the previous CSR. The host vector
  // goes away on return, so wait for the copy (a short bubble, once per training step).
  TOPK_CUDA(cudaMemcpyAsync(d, csr.data(), csr.size() * 4, cudaMemcpyHostToDevice, stream()));
  TOPK_CUDA(cudaStreamSynchronize(stream()));
  const int32_t* d_ids = d;
  const int32_t* d_off = d + ids.size();
  const int32_t* d_rows = d_off + off.size();
  const unsigned blocks = unsigned(ids.size());
  if (vec8(H, {dtable.data, dout.data})) {
    const int64_t packs = H / 8;
    const unsigned threads = packs >= 256 ? 256 : unsigned((packs + 31) / 32 * 32);
    embed_bwd<8><<<blocks, threads, 0, stream()>>>(fview(dtable), fview(dout), d_ids, d_off,
                                                   d_rows, H);
  } else {
    const unsigned threads = H >= 256 ? 256 : unsigned((H + 31) / 32 * 32);
    embed_bwd<1><<<blocks, threads, 0, stream()>>>(fview(dtable), fview(dout), d_ids, d_off,
                                                   d_rows, H);
  }
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
