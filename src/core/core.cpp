#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/device_mem.h"
#include "core/dtype.h"
#include "topk/core.h"

namespace topk {

namespace detail {

void assert_fail(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "topk: internal error: assertion '%s' failed at %s:%d\n", cond, file, line);
  std::abort();
}

std::string format_error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1024];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

}  // namespace detail

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::f8e4m3: return "f8e4m3";
  }
  return "?";
}

size_t dtype_size(DType t) {
  return t == DType::f8e4m3 ? 1 : t == DType::bf16 || t == DType::f16 ? 2 : 4;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return ndim == 0 ? 0 : n;
}

bool TensorView::is_contiguous() const {
  int64_t expect = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    if (shape[i] != 1 && stride[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

std::string TensorView::str() const {
  std::string s = dtype_name(dtype);
  s += device == Device::cuda ? "@cuda[" : "[";
  for (int i = 0; i < ndim; i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device) {
  TOPK_CHECK(shape.size() >= 1 && shape.size() <= 4, "make_view: %zu dims (1 to 4 supported)",
             shape.size());
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.ndim = int(shape.size());
  int i = 0;
  for (int64_t s : shape) {
    TOPK_CHECK(s >= 0, "make_view: negative dimension %lld", (long long)s);
    v.shape[i++] = s;
  }
  int64_t st = 1;
  for (int d = v.ndim - 1; d >= 0; d--) {
    v.stride[d] = st;
    st *= v.shape[d];
  }
  return v;
}

Buffer::Buffer(DType dtype, std::initializer_list<int64_t> shape, Device device) {
  view_ = make_view(nullptr, dtype, shape, device);
  size_t n = bytes();
  if (device == Device::cuda) {
    view_.data = device_alloc(n);
  } else if (n > 0) {
    size_t rounded = (n + 63) / 64 * 64;
    view_.data = std::aligned_alloc(64, rounded);
    TOPK_CHECK(view_.data, "Buffer: out of memory allocating %zu bytes", n);
    std::memset(view_.data, 0, rounded);
  }
}

Buffer::~Buffer() {
  if (!view_.data) return;
  if (view_.device == Device::cuda) device_free(view_.data);
  else std::free(view_.data);
}

Buffer::Buffer(Buffer&& o) noexcept : view_(o.view_) { o.view_.data = nullptr; }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    this->~Buffer();
    view_ = o.view_;
    o.view_.data = nullptr;
  }
  return *this;
}

// Copies element by element through fp32 (or raw for equal dtypes), on the host. Device
// tensors are staged through host memory; copy is a convenience, not a hot path.
void copy(const TensorView& dst, const TensorView& src) {
  TOPK_CHECK(dst.ndim == src.ndim, "copy: %s into %s", src.str().c_str(), dst.str().c_str());
  for (int i = 0; i < dst.ndim; i++)
    TOPK_CHECK(dst.shape[i] == src.shape[i], "copy: %s into %s", src.str().c_str(),
               dst.str().c_str());
  TOPK_CHECK((dst.dtype == DType::i32) == (src.dtype == DType::i32),
             "copy: cannot convert between %s and %s", dtype_name(src.dtype),
             dtype_name(dst.dtype));
  bool same = dst.dtype == src.dtype && dst.is_contiguous() && src.is_contiguous();
  size_t nbytes = size_t(src.numel()) * dtype_size(src.dtype);
  if (same && (dst.device == Device::cuda || src.device == Device::cuda)) {
    CopyKind kind = src.device == Device::cpu   ? CopyKind::host_to_device
                    : dst.device == Device::cpu ? CopyKind::device_to_host
                                                : CopyKind::device_to_device;
    device_copy(dst.data, src.data, nbytes, kind);
    return;
  }
  TOPK_CHECK(dst.device == Device::cpu && src.device == Device::cpu,
             "copy: device copies need equal dtypes and contiguous tensors (%s into %s)",
             src.str().c_str(), dst.str().c_str());
  if (same) {
    if (nbytes) std::memmove(dst.data, src.data, nbytes);
    return;
  }
  int64_t n = src.numel();
  int64_t idx[4] = {0, 0, 0, 0};
  for (int64_t e = 0; e < n; e++) {
    int64_t rem = e, so = 0, doff = 0;
    for (int d = src.ndim - 1; d >= 0; d--) {
      idx[d] = rem % src.shape[d];
      rem /= src.shape[d];
      so += idx[d] * src.stride[d];
      doff += idx[d] * dst.stride[d];
    }
    if (src.dtype == DType::i32) static_cast<int32_t*>(dst.data)[doff] = static_cast<const int32_t*>(src.data)[so];
    else store_f32(dst.data, dst.dtype, doff, load_f32(src.data, src.dtype, so));
  }
}

bool cuda_available() { return device_count() > 0; }

static thread_local void* g_cuda_stream = nullptr;
void set_cuda_stream(void* stream) { g_cuda_stream = stream; }
void* cuda_stream() { return g_cuda_stream; }

#ifndef TOPK_HAVE_CUDA
static void no_cuda() { throw Error("this build of topk has no CUDA backend (nvcc was not found at configure time)"); }
void* device_alloc(size_t) { no_cuda(); return nullptr; }
void device_free(void*) {}
void device_copy(void*, const void*, size_t, CopyKind) { no_cuda(); }
int device_count() { return 0; }
void device_synchronize() {}
int64_t device_memory_used() { return 0; }
#endif

}  // namespace topk
