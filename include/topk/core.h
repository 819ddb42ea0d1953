// topk core: errors, dtypes, non-owning tensor views and owning buffers.
// Plain C++20; no CUDA or framework types, so the CPU build stands alone.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace topk {

// A caller error (bad shape, out-of-range option, corrupt file). The message names the op,
// the values and, where useful, the fix. The CLI catches it once and exits non-zero.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// f8e4m3: FP8 E4M3 (one byte; the indexer's key cache, docs/semantics.md), read with a scale.
enum class DType : uint8_t { f32, bf16, f16, i32, f8e4m3 };
enum class Device : uint8_t { cpu, cuda };

const char* dtype_name(DType t);
size_t dtype_size(DType t);

// A strided view of up to 4 dimensions. Strides are in elements. Never owns memory.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int ndim = 0;
  int64_t shape[4] = {0, 0, 0, 0};
  int64_t stride[4] = {0, 0, 0, 0};

  int64_t numel() const;
  bool empty() const { return data == nullptr; }
  bool is_contiguous() const;
  std::string str() const;  // "bf16[8, 1, 32, 128]"
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// Contiguous row-major view over existing memory.
TensorView make_view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device = Device::cpu);

// Owning, contiguous, zero-initialised memory on the CPU (64-byte aligned) or on a CUDA device.
class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, std::initializer_list<int64_t> shape, Device device = Device::cpu);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }
  template <class T> T* ptr() const { return view_.ptr<T>(); }
  int64_t numel() const { return view_.numel(); }
  size_t bytes() const { return size_t(numel()) * dtype_size(view_.dtype); }

 private:
  TensorView view_;
};

// Copies between any two views of the same shape; converts dtype and moves between devices.
void copy(const TensorView& dst, const TensorView& src);

// True when this build has the CUDA backend and a device is present.
bool cuda_available();

// The CUDA stream that topk's CUDA work (attention ops, model ops, cuBLAS, device copies) runs
// on, for the calling thread: a cudaStream_t passed as void*, so that this header stays
// CUDA-free. nullptr (the default) is the legacy default stream. A framework with its own
// current stream sets it around each call (the PyTorch extension does). Thread-local; when
// successive calls on a device use different streams, topk synchronizes the device once at the
// switch, since its cached workspaces may still be in use on the old stream.
void set_cuda_stream(void* stream);
void* cuda_stream();

}  // namespace topk

// Argument checks that raise topk::Error with a formatted message.
#define TOPK_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) throw ::topk::Error(::topk::detail::format_error(__VA_ARGS__)); \
  } while (0)

// Internal invariants: always on, abort with file:line.
#define TOPK_ASSERT(cond)                                                      \
  do {                                                                         \
    if (!(cond)) ::topk::detail::assert_fail(#cond, __FILE__, __LINE__);       \
  } while (0)

namespace topk::detail {
[[noreturn]] void assert_fail(const char* cond, const char* file, int line);
std::string format_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
}  // namespace topk::detail
