// Elementwise ops, reductions and row moves on CUDA.
#include <vector>

#include "model/cuda/common.cuh"

namespace topk::ops::cuda {

namespace {

#define GRID_LOOP(i, n)                                                       \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

__global__ void add_kernel(F y, F a, F b, int64_t n) {
  GRID_LOOP(i, n) y.set(i, a.get(i) + b.get(i));
}
__global__ void scale_kernel(float* x, float s, int64_t n) {
  GRID_LOOP(i, n) x[i] *= s;
}
__global__ void convert_kernel(F dst, F src, int64_t n) {
  GRID_LOOP(i, n) dst.set(i, src.get(i));
}

// Sum of squares in two fixed-order passes: each block sums a fixed chunk (thread-strided, then
// a fixed tree), then one block sums the chunks in order, in double.
constexpr int kChunk = 1 << 16;
__global__ void sumsq_partial(const float* x, int64_t n, double* part) {
  __shared__ float sh[32];
  const int64_t c0 = int64_t(blockIdx.x) * kChunk;
  const int64_t c1 = c0 + kChunk < n ? c0 + kChunk : n;
  float s = 0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) s += x[i] * x[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = double(s);
}
__global__ void sumsq_final(const double* part, int64_t chunks, double* out) {
  if (threadIdx.x != 0) return;
  double s = 0;
  for (int64_t i = 0; i < chunks; i++) s += part[i];
  *out = s;
}

__global__ void finite_kernel(F x, int64_t n, int* bad) {
  GRID_LOOP(i, n) {
    if (!isfinite(x.get(i))) {
      atomicOr(bad, 1);  // an integer flag: the same result in any order
      return;
    }
  }
}

// Rows are moved as 4-byte words when the row size allows, else byte by byte.
template <class W>
__global__ void scatter_kernel(W* dst, const int32_t* index, const W* src, int64_t N, int64_t per) {
  GRID_LOOP(i, N * per) {
    const int64_t n = i / per, c = i % per;
    const int32_t r = index[n];
    if (r >= 0) dst[int64_t(r) * per + c] = src[i];
  }
}
template <class W>
__global__ void gather_kernel(W* dst, const W* src, const int32_t* index, int64_t N, int64_t per) {
  GRID_LOOP(i, N * per) {
    const int64_t n = i / per, c = i % per;
    dst[i] = src[int64_t(index[n]) * per + c];
  }
}

}  // namespace

void add(const TensorView& y, const TensorView& a, const TensorView& b) {
  const int64_t n = y.numel();
  if (n == 0) return;
  add_kernel<<<grid_for(n), 256, 0, stream()>>>(fview(y), fview(a), fview(b), n);
  TOPK_CUDA_LAUNCH();
}

void scale(const TensorView& x, float s) {
  const int64_t n = x.numel();
  if (n == 0) return;
  scale_kernel<<<grid_for(n), 256, 0, stream()>>>(x.ptr<float>(), s, n);
  TOPK_CUDA_LAUNCH();
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
  convert_kernel<<<grid_for(n), 256, 0, stream()>>>(fview(dst), fview(src), n);
  TOPK_CUDA_LAUNCH();
}

void zero(const TensorView& x) {
  const size_t bytes = size_t(x.numel()) * dtype_size(x.dtype);
  if (bytes) TOPK_CUDA(cudaMemsetAsync(x.data, 0, bytes, stream()));
}

double sum_squares(const TensorView& x) {
  const int64_t n = x.numel();
  if (n == 0) return 0;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  auto* part = static_cast<double*>(scratch_bytes(kSlotPartial, size_t(chunks + 1) * 8));
  sumsq_partial<<<unsigned(chunks), 512, 0, stream()>>>(x.ptr<float>(), n, part);
  TOPK_CUDA_LAUNCH();
  sumsq_final<<<1, 32, 0, stream()>>>(part, chunks, part + chunks);
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
  finite_kernel<<<grid_for(n), 256, 0, stream()>>>(fview(x), n, flag);
  TOPK_CUDA_LAUNCH();
  int bad = 0;
  TOPK_CUDA(cudaMemcpyAsync(&bad, flag, 4, cudaMemcpyDeviceToHost, stream()));
  TOPK_CUDA(cudaStreamSynchronize(stream()));
  return !bad;
}

void scatter_rows(const TensorView& dst, const TensorView& index, const TensorView& src) {
  const int64_t N = rows_of(src), bytes = cols_of(src) * int64_t(dtype_size(src.dtype));
  if (N == 0 || bytes == 0) return;
  if (bytes % 4 == 0) {
    scatter_kernel<<<grid_for(N * bytes / 4), 256, 0, stream()>>>(static_cast<uint32_t*>(dst.data),
                                                     index.ptr<int32_t>(),
                                                     static_cast<const uint32_t*>(src.data), N, bytes / 4);
  } else {
    scatter_kernel<<<grid_for(N * bytes), 256, 0, stream()>>>(static_cast<uint8_t*>(dst.data),
                                                 index.ptr<int32_t>(),
                                                 static_cast<const uint8_t*>(src.data), N, bytes);
  }
  TOPK_CUDA_LAUNCH();
}

void gather_rows(const TensorView& dst, const TensorView& src, const TensorView& index) {
  const int64_t N = rows_of(dst), bytes = cols_of(src) * int64_t(dtype_size(src.dtype));
  if (N == 0 || bytes == 0) return;
  if (bytes % 4 == 0) {
    gather_kernel<<<grid_for(N * bytes / 4), 256, 0, stream()>>>(static_cast<uint32_t*>(dst.data),
                                                    static_cast<const uint32_t*>(src.data),
                                                    index.ptr<int32_t>(), N, bytes / 4);
  } else {
    gather_kernel<<<grid_for(N * bytes), 256, 0, stream()>>>(static_cast<uint8_t*>(dst.data),
                                                static_cast<const uint8_t*>(src.data),
                                                index.ptr<int32_t>(), N, bytes);
  }
  TOPK_CUDA_LAUNCH();
}

}  // namespace topk::ops::cuda
