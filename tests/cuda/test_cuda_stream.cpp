// topk::set_cuda_stream: the attention ops, the model ops (cuBLAS included) and topk's device
// copies run on the caller's stream. The stream is non-blocking (the legacy default stream does
// not wait for it) and held up by a host callback before the inputs are copied in on it: an op
// that launched anywhere but that stream would read the zeroed inputs. Each op first runs once
// on the stream (warm-up), because topk waits for the device when the stream changes and when a
// workspace grows, which would hide a wrong launch. Results must equal, bit for bit, the same
// op run on the default stream. Skips when no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "model/ops.h"
#include "topk/attention.h"

using namespace topk;

namespace {

#define NEED_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

void check(cudaError_t e) { ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e); }

Buffer random_device(DType dt, std::initializer_list<int64_t> shape, uint64_t seed) {
  Buffer h(dt, shape);
  Rng r(seed);
  for (int64_t i = 0; i < h.numel(); i++) {
    float x = r.normal();
    if (dt == DType::bf16) {
      uint32_t u;
      std::memcpy(&u, &x, 4);
      h.ptr<uint16_t>()[i] = uint16_t(u >> 16);
    } else {
      h.ptr<float>()[i] = x;
    }
  }
  Buffer d(dt, shape, Device::cuda);
  copy(d, h);
  return d;
}

std::vector<unsigned char> bytes(const Buffer& d) {
  std::vector<unsigned char> out(d.bytes());
  check(cudaMemcpy(out.data(), d.ptr<void>(), d.bytes(), cudaMemcpyDeviceToHost));
  return out;
}

void CUDART_CB hold(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(150)); }

// On `s`: wait 150 ms, then copy each source into its (zeroed) destination.
void late_inputs(cudaStream_t s, const std::vector<std::pair<const Buffer*, const Buffer*>>& io) {
  for (auto& [dst, src] : io) check(cudaMemset(dst->ptr<void>(), 0, dst->bytes()));
  check(cudaDeviceSynchronize());
  check(cudaLaunchHostFunc(s, hold, nullptr));
  for (auto& [dst, src] : io)
    check(cudaMemcpyAsync(dst->ptr<void>(), src->ptr<void>(), src->bytes(),
                          cudaMemcpyDeviceToDevice, s));
}

TEST(CudaStream, AttentionOpsRunOnTheSetStream) {
  NEED_GPU();
  const int64_t B = 2, T = 16, S = 2048, Hq = 8, Hkv = 2, D = 128;
  Buffer q0 = random_device(DType::bf16, {B, T, Hq, D}, 1);
  Buffer k0 = random_device(DType::bf16, {B, S, Hkv, D}, 2);
  Buffer v0 = random_device(DType::bf16, {B, S, Hkv, D}, 3);
  Buffer q(DType::bf16, {B, T, Hq, D}, Device::cuda), k(DType::bf16, {B, S, Hkv, D}, Device::cuda),
      v(DType::bf16, {B, S, Hkv, D}, Device::cuda);
  SelectOpts sel;
  sel.k = 64;
  const int64_t K = select_capacity(sel, S);
  Buffer o(DType::f32, {B, T, Hq, D}, Device::cuda), lse(DType::f32, {B, T, Hq}, Device::cuda),
      idx(DType::i32, {B, T, Hq, K}, Device::cuda);
  Buffer o2(DType::f32, {B, T, Hq, D}, Device::cuda), lse2(DType::f32, {B, T, Hq}, Device::cuda);
  AttnOpts opts;
  opts.causal = true;
  auto run = [&](const TensorView& qq, const TensorView& kk, const TensorView& vv) {
    attention_forward(qq, kk, vv, {}, opts, o, lse);
    topk_attention_forward(qq, kk, vv, {}, opts, sel, o2, lse2, idx);
  };
  run(q0, k0, v0);  // the default stream
  check(cudaDeviceSynchronize());
  const auto want_o = bytes(o), want_o2 = bytes(o2), want_idx = bytes(idx);

  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  set_cuda_stream(s);
  run(q0, k0, v0);  // warm-up on s
  late_inputs(s, {{&q, &q0}, {&k, &k0}, {&v, &v0}});
  run(q, k, v);
  set_cuda_stream(nullptr);
  check(cudaStreamSynchronize(s));
  EXPECT_TRUE(bytes(o) == want_o) << "attention_forward did not wait for its stream";
  EXPECT_TRUE(bytes(o2) == want_o2) << "topk_attention_forward did not wait for its stream";
  EXPECT_TRUE(bytes(idx) == want_idx);
  check(cudaStreamDestroy(s));
}

TEST(CudaStream, ModelOpsAndCopiesRunOnTheSetStream) {
  NEED_GPU();
  const int64_t M = 256, N = 512, Kd = 384;
  Buffer a0 = random_device(DType::bf16, {M, Kd}, 4), b0 = random_device(DType::bf16, {Kd, N}, 5);
  Buffer a(DType::bf16, {M, Kd}, Device::cuda), b(DType::bf16, {Kd, N}, Device::cuda);
  Buffer c(DType::f32, {M, N}, Device::cuda);
  ops::gemm(c, a0, false, b0, false);
  check(cudaDeviceSynchronize());
  const auto want = bytes(c);

  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  set_cuda_stream(s);
  ops::gemm(c, a0, false, b0, false);  // warm-up on s (cuBLAS's stream is set here)
  late_inputs(s, {{&a, &a0}, {&b, &b0}});
  ops::gemm(c, a, false, b, false);
  Buffer h(DType::f32, {M, N});
  copy(h, c);  // a device-to-host copy on s: complete on return
  set_cuda_stream(nullptr);
  EXPECT_EQ(std::memcmp(h.ptr<void>(), want.data(), want.size()), 0)
      << "gemm or copy did not run on the set stream";
  check(cudaStreamDestroy(s));
}

}  // namespace
