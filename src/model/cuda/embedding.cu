// Token embedding lookup and its gradient on CUDA. The gradient sums the rows of each token in
// the order of their positions (a CSR built on the host from the ids it already has), so no
// float atomics and the same bits on every run.
#include <algorithm>
#include <numeric>
#include <vector>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

__global__ void embed_fwd(float* out, F table, const int32_t* tokens, int64_t N, int64_t H) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < N * H;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / H, c = i % H;
    out[i] = table.get(int64_t(tokens[n]) * H + c);
  }
}

// Block b owns distinct token ids[b]: its rows are rows[off[b] .. off[b+1]).
__global__ void embed_bwd(float* dtable, const float* dout, const int32_t* ids,
                          const int32_t* off, const int32_t* rows, int64_t H) {
  const int32_t t = ids[blockIdx.x], r0 = off[blockIdx.x], r1 = off[blockIdx.x + 1];
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    float s = 0;
    for (int32_t r = r0; r < r1; r++) s += dout[int64_t(rows[r]) * H + c];
    dtable[int64_t(t) * H + c] += s;
  }
}

}  // namespace

void embedding_forward(const TensorView& out, const TensorView& table, const TensorView& tokens) {
  const int64_t N = tokens.numel(), H = cols_of(table);
  if (N == 0) return;
  embed_fwd<<<grid_for(N * H), 256, 0, stream()>>>(out.ptr<float>(), fview(table), tokens.ptr<int32_t>(), N, H);
  TOPK_CUDA_LAUNCH();
}

void embedding_backward(const TensorView& dtable, const TensorView& dout,
                        std::span<const int32_t> tokens) {
  const int64_t N = int64_t(tokens.size()), H = cols_of(dtable);
  if (N == 0) return;
  // rows sorted by token, stable: each token's rows stay in increasing position.
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
  std::vector<int32_t> csr;
  csr.reserve(ids.size() + off.size() + rows.size());
  csr.insert(csr.end(), ids.begin(), ids.end());
  csr.insert(csr.end(), off.begin(), off.end());
  csr.insert(csr.end(), rows.begin(), rows.end());
  auto* d = static_cast<int32_t*>(scratch_bytes(kSlotCsr, csr.size() * 4));
  // Ordered after the kernels that read the previous CSR (same stream).
  TOPK_CUDA(cudaMemcpyAsync(d, csr.data(), csr.size() * 4, cudaMemcpyHostToDevice, stream()));
  // The copy reads host memory that goes away on return: wait for it.
  TOPK_CUDA(cudaStreamSynchronize(stream()));
  const int32_t* d_ids = d;
  const int32_t* d_off = d + ids.size();
  const int32_t* d_rows = d_off + off.size();
  embed_bwd<<<unsigned(ids.size()), 256, 0, stream()>>>(dtable.ptr<float>(), dout.ptr<float>(), d_ids, d_off,
                                           d_rows, H);
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
