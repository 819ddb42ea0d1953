// Elementwise ops, reductions and row moves on CUDA. The flat ops are map kernels (common.cuh).
// Row moves copy 16-, 4- or 1-byte words, whichever the row size and pointers allow.
#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

struct AddOp {  // y = a + b; y may alias a or b
  F y, a, b;
  template <int W>
  __device__ void run(int64_t i) const {
    float u[W], v[W];
    load<W>(a, i, u);
    load<W>(b, i, v);
#pragma unroll
    for (int k = 0; k < W; k++) u[k] += v[k];
    store<W>(y, i, u);
  }
};

struct ScaleOp {
  F x;
  float s;
  template <int W>
  __device__ void run(int64_t i) const {
    float u[W];
    load<W>(x, i, u);
#pragma unroll
    for (int k = 0; k < W; k++) u[k] *= s;
    store<W>(x, i, u);
  }
};

struct ConvertOp {  // f32 <-> bf16, rounding to nearest even
  F dst, src;
  template <int W>
  __device__ void run(int64_t i) const {
    float u[W];
    load<W>(src, i, u);
    store<W>(dst, i, u);
  }
};

struct FiniteOp {  // raises an integer flag: the same answer in any order
  F x;
  int* bad;
  template <int W>
  __device__ void run(int64_t i) const {
    float u[W];
    load<W>(x, i, u);
    bool ok = true;
#pragma unroll
    for (int k = 0; k < W; k++) ok &= isfinite(u[k]);
    if (!ok) atomicOr(bad, 1);
  }
};

// Sum of squares in two fixed-order passes: block b sums the elements of chunk b (each thread a
// fixed strided subset, then a fixed tree), then one block adds the chunk sums in double the same
// way. Chunks are multiples of 8 elements, so 8-element groups never straddle two.
constexpr int kChunk = 1 << 16, kSumThreads = 512, kFinalThreads = 256;
__global__ void __launch_bounds__(kSumThreads)
    sumsq_partial(const float* x, int64_t n, bool vec, double* part) {  // x [n], part [chunks]
  __shared__ float sh[32];
  const int64_t c0 = int64_t(blockIdx.x) * kChunk;
  const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
  const F xv{const_cast<float*>(x), false};
  float s = 0;
  int64_t i = c0;
  if (vec)
    for (int64_t j = c0 + int64_t(threadIdx.x) * 8; j + 8 <= c1; j += 8 * kSumThreads) {
      float u[8];
      xv.get8(j, u);
#pragma unroll
      for (int k = 0; k < 8; k++) s += u[k] * u[k];
    }
  if (vec) i = c0 + (c1 - c0) / 8 * 8;
  for (int64_t j = i + threadIdx.x; j < c1; j += kSumThreads) s += x[j] * x[j];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = double(s);
}
__global__ void sumsq_final(const double* part, int64_t chunks, double* out) {  // one block
  __shared__ double sh[kFinalThreads];
  double s = 0;
  for (int64_t i = threadIdx.x; i < chunks; i += kFinalThreads) s += part[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int o = kFinalThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

// Rows of `per` words: dst row index[n] = src row n (scatter, index < 0 skipped) or dst row n =
// src row index[n] (gather).
template <class Word>
__global__ void scatter_kernel(Word* dst, const int32_t* index, const Word* src, int64_t N,
                               int64_t per) {  // dst [R, per], index [N], src [N, per]
  const int64_t c = pack_col<1>();
  if (c >= per) return;
  TOPK_ROW_LOOP(n, N) {
    const int32_t r = index[n];
    if (r >= 0) dst[int64_t(r) * per + c] = src[n * per + c];
  }
}
template <class Word>
__global__ void gather_kernel(Word* dst, const Word* src, const int32_t* index, int64_t N,
                              int64_t per) {  // dst [N, per], src [R, per], index [N]
  const int64_t c = pack_col<1>();
  if (c >= per) return;
  TOPK_ROW_LOOP(n, N) dst[n * per + c] = src[int64_t(index[n]) * per + c];
}

// The widest word (16, 4 or 1 bytes) that divides the row and both bases.
int word_bytes(int64_t row_bytes, const void* a, const void* b) {
  for (int w : {16, 4})
    if (row_bytes % w == 0 && reinterpret_cast<uintptr_t>(a) % w == 0 &&
        reinterpret_cast<uintptr_t>(b) % w == 0)
      return w;
  return 1;
}

template <class Word>
void move_rows_as(bool scatter, void* dst, const void* src, const int32_t* index, int64_t N,
               int64_t row_bytes) {
  const int64_t per = row_bytes / int64_t(sizeof(Word));
  const RowLaunch l = row_launch(N, per);
  if (scatter)
    scatter_kernel<<<l.grid, l.block, 0, stream()>>>(static_cast<Word*>(dst), index,
                                                     static_cast<const Word*>(src), N, per);
  else
    gather_kernel<<<l.grid, l.block, 0, stream()>>>(static_cast<Word*>(dst),
                                                    static_cast<const Word*>(src), index, N, per);
  TOPK_CUDA_LAUNCH();
}

void move_rows(bool scatter, void* dst, const void* src, const int32_t* index, int64_t N,
               int64_t row_bytes) {
  if (N == 0 || row_bytes == 0) return;
  switch (word_bytes(row_bytes, dst, src)) {
    case 16: move_rows_as<uint4>(scatter, dst, src, index, N, row_bytes); break;
    case 4: move_rows_as<uint32_t>(scatter, dst, src, index, N, row_bytes); break;
    default: move_rows_as<uint8_t>(scatter, dst, src, index, N, row_bytes); break;
  }
}

}  // namespace

void add(const TensorView& y, const TensorView& a, const TensorView& b) {
  const int64_t n = y.numel();
  launch_map(n, vec8(8, {y.data, a.data, b.data}), AddOp{fview(y), fview(a), fview(b)});
}

void scale(const TensorView& x, float s) {
  launch_map(x.numel(), vec8(8, {x.data}), ScaleOp{fview(x), s});
}

void convert(const TensorView& dst, const TensorView& src) {
  const int64_t n = src.numel();
  if (n == 0) return;
  if (dst.dtype == src.dtype) {
    if (dst.data != src.data)
      TOPK_CUDA(cudaMemcpyAsync(dst.data, src.data, size_t(n) * dtype_size(src.dtype),
                                cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  launch_map(n, vec8(8, {dst.data, src.data}), ConvertOp{fview(dst), fview(src)});
}

void zero(const TensorView& x) {
  const size_t bytes = size_t(x.numel()) * dtype_size(x.dtype);
  if (bytes) TOPK_CUDA(cudaMemsetAsync(x.data, 0, bytes, stream()));
}

double sum_squares(const TensorView& x) {
  const int64_t n = x.numel();
  if (n == 0) return 0;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  TOPK_CHECK(chunks < (int64_t(1) << 31), "ops::sum_squares: %lld elements", (long long)n);
  auto* part = static_cast<double*>(scratch_bytes(kSlotPartial, size_t(chunks + 1) * 8));
  sumsq_partial<<<unsigned(chunks), kSumThreads, 0, stream()>>>(x.ptr<float>(), n,
                                                               aligned16(x.data), part);
  TOPK_CUDA_LAUNCH();
  sumsq_final<<<1, kFinalThreads, 0, stream()>>>(part, chunks, part + chunks);
  TOPK_CUDA_LAUNCH();
  double s = 0;
  TOPK_CUDA(cudaMemcpyAsync(&s, part + chunks, 8, cudaMemcpyDeviceToHost, stream()));
  TOPK_CUDA(cudaStreamSynchronize(stream()));
  return s;
}

bool all_finite(const TensorView& x) {
  const int64_t n = x.numel();
  if (n == 0) return true;
  int* flag = static_cast<int*>(scratch_bytes(kSlotFlag, 4));
  TOPK_CUDA(cudaMemsetAsync(flag, 0, 4, stream()));
  launch_map(n, vec8(8, {x.data}), FiniteOp{fview(x), flag});
  int bad = 0;
  TOPK_CUDA(cudaMemcpyAsync(&bad, flag, 4, cudaMemcpyDeviceToHost, stream()));
  TOPK_CUDA(cudaStreamSynchronize(stream()));
  return !bad;
}

void scatter_rows(const TensorView& dst, const TensorView& index, const TensorView& src) {
  move_rows(true, dst.data, src.data, index.ptr<int32_t>(), rows_of(src),
            cols_of(src) * int64_t(dtype_size(src.dtype)));
}

void gather_rows(const TensorView& dst, const TensorView& src, const TensorView& index) {
  move_rows(false, dst.data, src.data, index.ptr<int32_t>(), rows_of(dst),
            cols_of(src) * int64_t(dtype_size(src.dtype)));
}

}  // namespace topk::ops::cuda
