// `topk bench cuda [--json] [--out FILE] [--reps N] [--quick] [--only NAME[,NAME...]]`: GPU
// decode benchmarks of our ops beside a device-to-device copy measured in the same run. CUDA
// events around each call, warm-up, median of many runs, inputs rotated when a set fits in
// L2. Bytes are counted per case and the floor is bytes / measured copy bandwidth (copy
// counts bytes read plus bytes written). Then causal prefill forwards (cases prefill_*): dense
// flash attention beside top-k attention on each of its pipelines, timed in the same run;
// training attention, forward + backward (cases fwdbwd_*): dense beside top-k with per-head lists
// (fwdbwd_topk_r*) and with one list per KV group (fwdbwd_topk_group_r*); and, when --only
// names `dispatch`, the top-k decode pipelines forced one by one over a grid of (B, S).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/json.h"
#include "core/rng.h"
#include "attention/params.h"
#include "attention/select_rule.h"
#include "topk/approx.h"
#include "topk/attention.h"

#ifdef TOPK_HAVE_CUDA
#include <cuda_runtime.h>
#include <nlohmann/json.hpp>

namespace topk::cli {

namespace {

#define BCHECK(x)                                                                          \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) throw Error(std::string("bench cuda: ") + cudaGetErrorString(e_)); \
  } while (0)

// Median time in microseconds of fn(i) over reps runs (i = run number), after warm-up.
template <class F>
double time_us(F&& fn, int reps, int warmup = 5) {
  for (int i = 0; i < warmup; i++) fn(i);
  BCHECK(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> ev(size_t(2 * reps));
  for (auto& e : ev) BCHECK(cudaEventCreate(&e));
  for (int i = 0; i < reps; i++) {
    BCHECK(cudaEventRecord(ev[size_t(2 * i)]));
    fn(i);
    BCHECK(cudaEventRecord(ev[size_t(2 * i + 1)]));
  }
  BCHECK(cudaDeviceSynchronize());
  std::vector<double> t(static_cast<size_t>(reps));
  for (int i = 0; i < reps; i++) {
    float ms = 0;
    BCHECK(cudaEventElapsedTime(&ms, ev[size_t(2 * i)], ev[size_t(2 * i + 1)]));
    t[size_t(i)] = ms * 1e3;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Fills a device buffer with random normal values (bf16 or f32) through a host staging copy.
// Each 2^24-element chunk has its own generator (seed, chunk), so the chunks are made in
// parallel and the values do not depend on the thread count: filling the 2 GiB of K and V at
// B=8 would otherwise take most of the benchmark's time.
void fill(Buffer& dev, uint64_t seed) {
  TensorView v = dev.view();
  const int64_t chunk = int64_t(1) << 24, n_all = v.numel();
  const int64_t batch = 16 * chunk;  // host staging of at most 16 chunks
  Buffer h(v.dtype, {std::min(batch, n_all)});
  for (int64_t o = 0; o < n_all; o += batch) {
    const int64_t nb = std::min(batch, n_all - o);
#pragma omp parallel for schedule(dynamic)
    for (int64_t c = 0; c < nb; c += chunk) {
      Rng rng(seed * 1000003u + uint64_t((o + c) / chunk));
      const int64_t n = std::min(chunk, nb - c);
      for (int64_t i = c; i < c + n; i++) {
        float x = rng.normal();
        if (v.dtype == DType::f32) {
          h.ptr<float>()[i] = x;
        } else {
          uint32_t u;
          std::memcpy(&u, &x, 4);
          u += 0x7fffu + ((u >> 16) & 1u);
          h.ptr<uint16_t>()[i] = uint16_t(u >> 16);
        }
      }
    }
    BCHECK(cudaMemcpy(static_cast<char*>(v.data) + o * dtype_size(v.dtype), h.ptr<void>(),
                      size_t(nb) * dtype_size(v.dtype), cudaMemcpyHostToDevice));
  }
}

struct Result {
  std::string name, op;
  int64_t B = 0, S = 0, Hq = 0, Hkv = 0, D = 0, k = 0;
  double us = 0, bytes = 0, k_bytes = 0;
};

// A causal prefill forward: its time and the flops it is judged by (dense: the two products,
// 4 Hq D per visible (query, key) pair; top-k: its score product, 2 Hq D per pair).
struct PrefillResult {
  std::string name, path, budget;
  int64_t S = 0;
  double us = 0, flops = 0, dense_us = 0;
};

// Causal prefill forward at B = 1, Hq = 32, Hkv = 8, D = 128, bf16 (the shape of issue 23's
// targets): dense attention_forward, then top-k attention with ratio 0.01 and with k = 2048 on
// the threshold, gemm and filtered pipelines (TOPK_CUDA_TOPK_PATH), each beside the dense time.
template <class Want>
void bench_prefill(const std::vector<int64_t>& lengths, int reps, const Want& want,
                   std::vector<PrefillResult>& out) {
  const int64_t Hq = 32, Hkv = 8, D = 128;
  SelectOpts r01;
  r01.ratio = 0.01;
  SelectOpts k2048;
  k2048.k = 2048;
  const std::pair<const char*, SelectOpts> budgets[] = {{"r0.01", r01}, {"k2048", k2048}};
  for (int64_t S : lengths) {
    const std::string tag = "_S" + std::to_string(S);
    bool any = want("prefill_dense" + tag);
    for (const auto& b : budgets)
      for (const char* path : {"threshold", "gemm", "filtered"})
        any = any || want(std::string("prefill_topk_") + b.first + "_" + path + tag);
    if (!any) continue;
    Buffer q(DType::bf16, {1, S, Hq, D}, Device::cuda), k(DType::bf16, {1, S, Hkv, D}, Device::cuda),
        v(DType::bf16, {1, S, Hkv, D}, Device::cuda);
    fill(q, 40);
    fill(k, 41);
    fill(v, 42);
    Buffer o(DType::bf16, {1, S, Hq, D}, Device::cuda), lse(DType::f32, {1, S, Hq}, Device::cuda);
    AttnOpts causal;
    causal.causal = true;
    const double pairs = double(S) * double(S + 1) / 2;  // visible (query, key) pairs
    PrefillResult dense{"prefill_dense" + tag, "dense", "-", S, 0, 4.0 * Hq * D * pairs, 0};
    // The dense time is the ratio's baseline: measured whenever any prefill case runs.
    dense.us = time_us([&](int) { attention_forward(q, k, v, {}, causal, o, lse); }, reps, 2);
    dense.dense_us = dense.us;
    if (want(dense.name)) out.push_back(dense);
    for (const auto& b : budgets) {
      Buffer idx(DType::i32, {1, S, Hq, select_capacity(b.second, S)}, Device::cuda);
      for (const char* path : {"threshold", "gemm", "filtered"}) {
        PrefillResult r{std::string("prefill_topk_") + b.first + "_" + path + tag, path, b.first, S, 0,
                        2.0 * Hq * D * pairs, dense.us};
        if (!want(r.name)) continue;
        setenv("TOPK_CUDA_TOPK_PATH", path, 1);
        r.us = time_us([&](int) { topk_attention_forward(q, k, v, {}, causal, b.second, o, lse, idx); }, reps, 1);
        unsetenv("TOPK_CUDA_TOPK_PATH");
        out.push_back(r);
      }
    }
  }
}

// Training attention, forward + backward, causal, over B x S = 131072 tokens (Hq = 32, Hkv = 8,
// D = 128, bf16: the shape of the native top-k training issue): dense (attention_forward +
// attention_backward) and top-k at ratio 0.01 and 0.05 (topk_attention_forward +
// sparse_attention_backward over its indices). extra_bytes: device memory the case adds beyond
// q, k, v, o, lse, dO and the gradients, measured as the drop of free memory over the case
// with the cached workspaces released first (the indices and every workspace, at their peak
// since workspaces only grow). flops: dense 14 Hq D per visible pair (forward 4, backward 10);
// top-k 2 Hq D per visible pair for its scores plus 14 D per selected (row, head, key).
struct TrainAttnResult {
  std::string name, budget;
  int64_t B = 0, S = 0;
  double us = 0, fwd_us = 0, flops = 0, extra_bytes = 0, dense_us = 0;
  double bytes = 0;  // what any implementation must move (see kBf16PeakTflops)
};

// The floors beside each training-attention time: its flops at the dense bf16 tensor-core peak
// of an H100 or H200 SXM (989 TFLOP/s), and its bytes at the copy rate measured in the run. The
// bytes: q, k, v read and o, lse written by the forward; q, k, v, o, dO, lse read and the f32
// dq, dk, dv written by the backward; top-k adds its selected indices, written and read once.
constexpr double kBf16PeakTflops = 989.0;

double free_bytes() {
  size_t f = 0, t = 0;
  BCHECK(cudaDeviceSynchronize());
  BCHECK(cudaMemGetInfo(&f, &t));
  return double(f);
}

template <class Want>
void bench_train_attention(const std::vector<int64_t>& lengths, int reps, const Want& want,
                           std::vector<TrainAttnResult>& out) {
  auto tensor_bytes = [](int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D) {
    const double qo = double(B) * S * Hq * D, kv = double(B) * S * Hkv * D, lse = double(B) * S * Hq * 4;
    const double fwd = (qo + 2 * kv + qo) * 2 + lse;
    const double bwd = (qo + 2 * kv + qo + qo) * 2 + lse + (qo + 2 * kv) * 4;
    return fwd + bwd;
  };
  const int64_t Hq = 32, Hkv = 8, D = 128, tokens = 131072;
  const double budgets[] = {0.01, 0.05};
  for (int64_t S : lengths) {
    const std::string tag = "_S" + std::to_string(S);
    // Per-head lists (fwdbwd_topk_r*) and one list per KV group (fwdbwd_topk_group_r*).
    auto topk_name = [&](bool group, double r) {
      return std::string(group ? "fwdbwd_topk_group_r" : "fwdbwd_topk_r") + std::to_string(r).substr(0, 4) + tag;
    };
    bool any = want("fwdbwd_dense" + tag);
    for (bool group : {false, true})
      for (double r : budgets) any = any || want(topk_name(group, r));
    if (!any) continue;
    const int64_t B = tokens / S;
    auto make = [&](int64_t H, uint64_t seed) {
      Buffer b(DType::bf16, {B, S, H, D}, Device::cuda);
      fill(b, seed);
      return b;
    };
    Buffer q = make(Hq, 50), k = make(Hkv, 51), v = make(Hkv, 52), dout = make(Hq, 53);
    Buffer o(DType::bf16, {B, S, Hq, D}, Device::cuda), lse(DType::f32, {B, S, Hq}, Device::cuda);
    // The backward accumulates gradients in f32.
    Buffer dq(DType::f32, {B, S, Hq, D}, Device::cuda), dk(DType::f32, {B, S, Hkv, D}, Device::cuda),
        dv(DType::f32, {B, S, Hkv, D}, Device::cuda);
    AttnOpts causal;
    causal.causal = true;
    const double pairs = double(B) * double(S) * double(S + 1) / 2;
    TrainAttnResult dense{"fwdbwd_dense" + tag, "-", B, S};
    dense.flops = 14.0 * Hq * D * pairs;
    dense.bytes = tensor_bytes(B, S, Hq, Hkv, D);
    // The dense time is the ratios' baseline: measured whenever any case of this length runs.
    cuda::workspace_release();
    double free0 = free_bytes();
    dense.fwd_us = time_us([&](int) { attention_forward(q, k, v, {}, causal, o, lse); }, reps, 1);
    dense.us = time_us([&](int) {
      attention_forward(q, k, v, {}, causal, o, lse);
      attention_backward(q, k, v, o, lse, dout, {}, causal, dq, dk, dv);
    }, reps, 1);
    dense.extra_bytes = free0 - free_bytes();
    dense.dense_us = dense.us;
    if (want(dense.name)) out.push_back(dense);
    for (bool group : {false, true}) for (double ratio : budgets) {
      TrainAttnResult r{topk_name(group, ratio),
                        std::string(group ? "group,ratio=" : "ratio=") + std::to_string(ratio).substr(0, 4), B, S};
      if (!want(r.name)) continue;
      SelectOpts sel;
      sel.ratio = ratio;
      sel.share_group = group;
      const int64_t Hsel = group ? Hkv : Hq;
      double entries = 0;
      for (int64_t t = 0; t < S; t++) entries += double(budget_of(0, ratio, 0, t + 1));
      r.flops = 2.0 * Hq * D * pairs + 14.0 * D * entries * double(B * Hq);
      r.bytes = tensor_bytes(B, S, Hq, Hkv, D) + 2.0 * 4 * entries * double(B * Hsel);
      cuda::workspace_release();
      free0 = free_bytes();
      {
        Buffer idx(DType::i32, {B, S, Hsel, select_capacity(sel, S)}, Device::cuda);
        r.fwd_us = time_us([&](int) { topk_attention_forward(q, k, v, {}, causal, sel, o, lse, idx); }, reps, 1);
        r.us = time_us([&](int) {
          topk_attention_forward(q, k, v, {}, causal, sel, o, lse, idx);
          sparse_attention_backward(q, k, v, idx, o, lse, dout, {}, causal, dq, dk, dv);
        }, reps, 1);
        r.extra_bytes = free0 - free_bytes();
      }
      r.dense_us = dense.us;
      out.push_back(r);
    }
    cuda::workspace_release();
  }
}

}  // namespace

// The top-k decode dispatch measured: each (B, S) decode shape timed with the default pipeline
// choice and with each pipeline forced (TOPK_CUDA_TOPK_PATH), so that the rule in
// topk/pipeline.cu can be checked against this GPU instead of the GPU it was tuned on.
struct DispatchResult {
  int64_t B, S;
  double default_us, threshold_us, general_us;
};

void bench_dispatch(int reps, std::vector<DispatchResult>& out) {
  const int Hq = 32, Hkv = 8, D = 128;
  const int64_t Bmax = 16, Smax = 131072;
  SelectOpts sel;
  sel.k = 2048;
  // One cache of the largest shape, filled once; each shape reads a [B, S] corner of it.
  Buffer k(DType::bf16, {Bmax, Smax, Hkv, D}, Device::cuda), v(DType::bf16, {Bmax, Smax, Hkv, D}, Device::cuda);
  Buffer q(DType::bf16, {Bmax, 1, Hq, D}, Device::cuda);
  fill(k, 50), fill(v, 51), fill(q, 52);
  Buffer o(DType::bf16, {Bmax, 1, Hq, D}, Device::cuda), lse(DType::f32, {Bmax, 1, Hq}, Device::cuda);
  Buffer idx(DType::i32, {Bmax, 1, Hq, sel.k}, Device::cuda);
  auto corner = [](const Buffer& b, int64_t B, int64_t S) {
    TensorView t = b.view();  // strides stay the full buffer's
    t.shape[0] = B;
    t.shape[1] = std::min(S, t.shape[1]);
    return t;
  };
  for (int64_t S : {8192, 32768, 65536, 131072}) {
    for (int64_t B : {1, 2, 4, 8, 16}) {
      auto run = [&](const char* path) {
        if (path) setenv("TOPK_CUDA_TOPK_PATH", path, 1);
        else unsetenv("TOPK_CUDA_TOPK_PATH");
        const double us = time_us([&](int) {
          topk_attention_forward(corner(q, B, 1), corner(k, B, S), corner(v, B, S), {}, {}, sel,
                                 corner(o, B, 1), corner(lse, B, 1), corner(idx, B, 1));
        }, reps);
        unsetenv("TOPK_CUDA_TOPK_PATH");
        return us;
      };
      out.push_back({B, S, run(nullptr), run("threshold"), run("general")});
    }
  }
}

int bench_cuda(int argc, char** argv) {
  bool json = false;
  std::string out;
  int reps = 50;
  bool quick = false;
  std::string only;  // run only the cases whose name contains one of these (comma-separated)
  CLI::App app("GPU decode, select, prefill and training attention: topk's CUDA kernels timed "
               "against the device's copy bandwidth and against dense attention.", "topk bench cuda");
  app.add_flag("--json", json, "one JSON object per line");
  add_text(app, "--out", out, "also write the JSON lines to FILE")->type_name("FILE");
  add_int(app, "--reps", reps, 1, 1000000, "timed repetitions (50)");
  app.add_flag("--quick", quick, "fewer, smaller cases");
  add_text(app, "--only", only, "run only the cases whose name contains one of these")
      ->type_name("NAME[,NAME...]");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  if (!cuda_available()) {
    std::fprintf(stderr, "bench cuda: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  BCHECK(cudaGetDeviceProperties(&prop, 0));
  const double l2 = double(prop.l2CacheSize);

  // Device-to-device copy of 1 GiB: bytes read + bytes written.
  double copy_gbps;
  {
    size_t n = size_t(1) << 30;
    void *a, *b;
    BCHECK(cudaMalloc(&a, n));
    BCHECK(cudaMalloc(&b, n));
    BCHECK(cudaMemset(a, 1, n));
    double us = time_us([&](int) { BCHECK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice)); }, reps);
    copy_gbps = 2.0 * double(n) / (us * 1e3);
    cudaFree(a);
    cudaFree(b);
  }

  std::vector<Result> results;
  const int Hq = 32, Hkv = 8, K = 2048;
  // Head dim 128 (the targets' shape), and one D = 256 shape at the same K/V bytes per batch
  // as B = 8, S = 128K would take at half the keys (Gemma-style heads).
  struct Shape { int64_t B, S; int D; };
  std::vector<Shape> shapes = {{8, 131072, 128}, {1, 32768, 128}, {1, 131072, 128}, {8, 65536, 256}};
  if (quick) shapes = {{1, 32768, 128}};
  // --only takes comma-separated parts of case names.
  auto want = [&](const std::string& name) {
    if (only.empty()) return true;
    for (size_t b = 0; b <= only.size();) {
      size_t e = only.find(',', b);
      if (e == std::string::npos) e = only.size();
      if (e > b && name.find(std::string_view(only).substr(b, e - b)) != std::string::npos) return true;
      b = e + 1;
    }
    return false;
  };
  for (const Shape& sh : shapes) {
    const int D = sh.D;
    std::string tag = "B";  // appended piece by piece: GCC 12 warns (-Wrestrict) on "B" + string
    tag += std::to_string(sh.B);
    tag += "_S";
    tag += std::to_string(sh.S);
    if (D != 128) {
      tag += "_D";
      tag += std::to_string(D);
    }
    bool any = false;
    for (const char* op : {"full_decode_", "topk_decode_", "full_decode_hnd_", "topk_decode_hnd_",
                           "stage_scores_", "stage_select_", "stage_sparse_"})
      any = any || want(op + tag);
    if (!any) continue;
    int64_t kv_bytes = sh.B * sh.S * Hkv * D * 2;
    int rot = kv_bytes * 2 < 2 * l2 ? int(std::min(8.0, std::ceil(2 * l2 / double(kv_bytes * 2)))) : 1;
    std::vector<Buffer> ks, vs, qs;
    for (int r = 0; r < rot; r++) {
      ks.emplace_back(DType::bf16, std::initializer_list<int64_t>{sh.B, sh.S, Hkv, D}, Device::cuda);
      vs.emplace_back(DType::bf16, std::initializer_list<int64_t>{sh.B, sh.S, Hkv, D}, Device::cuda);
      qs.emplace_back(DType::bf16, std::initializer_list<int64_t>{sh.B, 1, Hq, D}, Device::cuda);
      fill(ks.back(), 10 + r);
      fill(vs.back(), 20 + r);
      fill(qs.back(), 30 + r);
    }
    Buffer o(DType::bf16, {sh.B, 1, Hq, D}, Device::cuda), lse(DType::f32, {sh.B, 1, Hq}, Device::cuda);
    Buffer idx(DType::i32, {sh.B, 1, Hq, K}, Device::cuda);
    Result full{"full_decode_" + tag, "full_decode", sh.B, sh.S, Hq, Hkv, D, 0};
    full.bytes = 2.0 * double(kv_bytes);
    full.k_bytes = double(kv_bytes);
    if (want(full.name)) {
      full.us = time_us([&](int i) {
        int r = i % rot;
        attention_forward(qs[size_t(r)], ks[size_t(r)], vs[size_t(r)], {}, {}, o, lse);
      }, reps);
      results.push_back(full);
    }

    SelectOpts sel;
    sel.k = K;
    Result tk{"topk_decode_" + tag, "topk_decode", sh.B, sh.S, Hq, Hkv, D, K};
    // K once, the chosen V rows, the indices (the candidates stay in L2).
    tk.bytes = double(kv_bytes) + double(sh.B) * Hq * K * D * 2 + double(sh.B) * Hq * K * 4;
    tk.k_bytes = double(kv_bytes);
    if (want(tk.name)) {
      tk.us = time_us([&](int i) {
        int r = i % rot;
        topk_attention_forward(qs[size_t(r)], ks[size_t(r)], vs[size_t(r)], {}, {}, sel, o, lse, idx);
      }, reps);
      results.push_back(tk);
    }

    // The same calls on a head-major cache: K and V stored [B, Hkv, S, D] (torch SDPA's
    // layout), passed as strided [B, S, Hkv, D] views, so each KV head's keys are contiguous.
    Result fh{"full_decode_hnd_" + tag, "full_decode_hnd", sh.B, sh.S, Hq, Hkv, D, 0};
    Result th{"topk_decode_hnd_" + tag, "topk_decode_hnd", sh.B, sh.S, Hq, Hkv, D, K};
    if (sh.B * sh.S != 131072 && (want(fh.name) || want(th.name))) {
      // The same random values as ks[0] and vs[0], reinterpreted in the other layout.
      Buffer kh(DType::bf16, {sh.B, Hkv, sh.S, D}, Device::cuda), vh(DType::bf16, {sh.B, Hkv, sh.S, D}, Device::cuda);
      BCHECK(cudaMemcpy(kh.ptr<void>(), ks[0].ptr<void>(), size_t(kv_bytes), cudaMemcpyDeviceToDevice));
      BCHECK(cudaMemcpy(vh.ptr<void>(), vs[0].ptr<void>(), size_t(kv_bytes), cudaMemcpyDeviceToDevice));
      auto bshd = [&](const Buffer& b) {
        TensorView v = b.view();
        v.shape[1] = sh.S;
        v.shape[2] = Hkv;
        v.stride[1] = D;
        v.stride[2] = sh.S * D;
        return v;
      };
      fh.bytes = full.bytes;
      fh.k_bytes = full.k_bytes;
      if (want(fh.name)) {
        fh.us = time_us([&](int) { attention_forward(qs[0], bshd(kh), bshd(vh), {}, {}, o, lse); }, reps);
        results.push_back(fh);
      }
      th.bytes = tk.bytes;
      th.k_bytes = tk.k_bytes;
      if (want(th.name)) {
        th.us = time_us([&](int) { topk_attention_forward(qs[0], bshd(kh), bshd(vh), {}, {}, sel, o, lse, idx); }, reps);
        results.push_back(th);
      }
    }

    // The three public ops that make the general (group-sharing) pipeline: scores, select
    // over them, sparse attention over the selection. Each runs once untimed first, so the
    // later stages have real inputs when an earlier one is filtered out.
    Result a{"stage_scores_" + tag, "stage_scores", sh.B, sh.S, Hq, Hkv, D, 0};
    Result b{"stage_select_" + tag, "stage_select", sh.B, sh.S, Hq, Hkv, D, K};
    Result c{"stage_sparse_" + tag, "stage_sparse", sh.B, sh.S, Hq, Hkv, D, K};
    if (sh.B * Hq * sh.S * 4 <= (int64_t(1) << 30) && (want(a.name) || want(b.name) || want(c.name))) {
      Buffer sc(DType::f32, {sh.B, 1, Hq, sh.S}, Device::cuda);
      attention_scores(qs[0], ks[0], {}, {}, sc);
      topk_select(sc, {}, {}, sel, idx);
      a.bytes = double(kv_bytes) + double(sh.B) * Hq * sh.S * 4;
      a.k_bytes = double(kv_bytes);
      if (want(a.name)) {
        a.us = time_us([&](int) { attention_scores(qs[0], ks[0], {}, {}, sc); }, reps);
        results.push_back(a);
      }
      b.bytes = double(sh.B) * Hq * sh.S * 4;
      b.k_bytes = b.bytes;
      if (want(b.name)) {
        b.us = time_us([&](int) { topk_select(sc, {}, {}, sel, idx); }, reps);
        results.push_back(b);
      }
      c.bytes = 2.0 * sh.B * Hq * K * D * 2;
      c.k_bytes = c.bytes / 2;
      if (want(c.name)) {
        c.us = time_us([&](int) { sparse_attention_forward(qs[0], ks[0], vs[0], idx, {}, {}, o, lse); }, reps);
        results.push_back(c);
      }
    }
  }

  // Lightning Indexer decode (topk/approx.h) at B = 8, S = 128K: HI = 64 indexer heads of
  // dI = 128 over one bf16 key per token, top-2048 shared by the 32 query heads, then sparse
  // attention over the 8 KV heads. Its stages alone too (scores, select over one row per query,
  // and the whole op). Floor: the indexer keys once, the score row written and read, the chosen
  // K and V rows of every KV head, the indices.
  const std::string ix_tag = "_B8_S131072";
  if (!quick && (want("indexer_decode" + ix_tag) || want("indexer_scores" + ix_tag) ||
                 want("indexer_select" + ix_tag) || want("indexer_fp8_scores" + ix_tag) ||
                 want("indexer_fp8_decode" + ix_tag))) {
    const int64_t B = 8, S = 131072, HI = 64, dI = 128, D = 128;
    const std::string& tag = ix_tag;
    Buffer q(DType::bf16, {B, 1, Hq, D}, Device::cuda), k(DType::bf16, {B, S, Hkv, D}, Device::cuda),
        v(DType::bf16, {B, S, Hkv, D}, Device::cuda), qi(DType::bf16, {B, 1, HI, dI}, Device::cuda),
        ki(DType::bf16, {B, S, 1, dI}, Device::cuda), w(DType::f32, {B, 1, HI}, Device::cuda);
    fill(q, 41), fill(k, 42), fill(v, 43), fill(qi, 44), fill(ki, 45), fill(w, 46);
    Buffer o(DType::bf16, {B, 1, Hq, D}, Device::cuda), lse(DType::f32, {B, 1, Hq}, Device::cuda);
    Buffer idx(DType::i32, {B, 1, Hkv, K}, Device::cuda), one(DType::i32, {B, 1, 1, K}, Device::cuda);
    Buffer sc(DType::f32, {B, 1, 1, S}, Device::cuda);
    SelectOpts sel;
    sel.k = K;
    const double ki_bytes = double(B) * S * dI * 2, sc_bytes = double(B) * S * 4;
    const double kv_sel = double(B) * K * Hkv * D * 2 * 2 + double(B) * Hkv * K * 4;
    // Times a case when --only asks for it.
    auto run_case = [&](Result r, auto&& call) {
      if (!want(r.name)) return;
      r.us = time_us([&](int) { call(); }, reps);
      results.push_back(r);
    };
    Result a{"indexer_scores" + tag, "indexer_scores", B, S, HI, 1, dI, 0};
    a.bytes = ki_bytes + sc_bytes;
    a.k_bytes = ki_bytes;
    indexer_scores(qi, w, ki, {}, {}, sc);
    topk_select(sc, {}, {}, sel, one);
    run_case(a, [&] { indexer_scores(qi, w, ki, {}, {}, sc); });
    Result b{"indexer_select" + tag, "indexer_select", B, S, 1, 1, 1, K};
    b.bytes = sc_bytes + double(B) * K * 4;
    b.k_bytes = sc_bytes;
    run_case(b, [&] { topk_select(sc, {}, {}, sel, one); });
    Result c{"indexer_decode" + tag, "indexer_decode", B, S, Hq, Hkv, D, K};
    c.bytes = ki_bytes + 2 * sc_bytes + kv_sel;
    c.k_bytes = ki_bytes;
    run_case(c, [&] { indexer_attention_forward(q, k, v, qi, w, ki, {}, {}, sel, o, lse, idx); });
    // The same over the FP8 key cache (E4M3 + a scale per key: dI + 4 bytes a key).
    Buffer k8(DType::f8e4m3, {B, S, 1, dI}, Device::cuda), ks(DType::f32, {B, S}, Device::cuda);
    indexer_quantize_keys(ki, k8, ks);
    const double k8_bytes = double(B) * S * (dI + 4);
    Result f{"indexer_fp8_scores" + tag, "indexer_scores", B, S, HI, 1, dI, 0};
    f.bytes = k8_bytes + sc_bytes;
    f.k_bytes = k8_bytes;
    run_case(f, [&] { indexer_scores(qi, w, k8, ks, {}, {}, sc); });
    Result g{"indexer_fp8_decode" + tag, "indexer_decode", B, S, Hq, Hkv, D, K};
    g.bytes = k8_bytes + 2 * sc_bytes + kv_sel;
    g.k_bytes = k8_bytes;
    run_case(g, [&] { indexer_attention_forward(q, k, v, qi, w, k8, ks, {}, {}, sel, o, lse, idx); });
  }

  // Standalone select over [256, 131072] f32 rows, k = 2048.
  if (!quick && want("select_256x131072")) {
    int64_t rows = 256, S = 131072;
    Buffer sc(DType::f32, {1, 1, rows, S}, Device::cuda);
    fill(sc, 77);
    Buffer idx(DType::i32, {1, 1, rows, K}, Device::cuda);
    SelectOpts sel;
    sel.k = K;
    Result r{"select_256x131072", "select", 1, S, rows, rows, 1, K};
    r.us = time_us([&](int) { topk_select(sc, {}, {}, sel, idx); }, reps);
    r.bytes = double(rows) * S * 4 + double(rows) * K * 4;
    r.k_bytes = double(rows) * S * 4;
    results.push_back(r);
  }

  // Prefill: a few runs each (the threshold pipeline takes about a second at 32K).
  std::vector<PrefillResult> prefill;
  bench_prefill(quick ? std::vector<int64_t>{8192} : std::vector<int64_t>{8192, 32768},
                std::max(1, std::min(reps, 5)), want, prefill);

  // Training attention (forward + backward): a few runs each; S = 128K only when --only names
  // it (fwdbwd_..._S131072: seconds per run and tens of GB of indices at rho = 5%).
  std::vector<TrainAttnResult> train;
  std::vector<int64_t> train_lengths = quick ? std::vector<int64_t>{8192} : std::vector<int64_t>{8192, 32768};
  if (only.find("S131072") != std::string::npos) train_lengths.push_back(131072);
  bench_train_attention(train_lengths, std::max(1, std::min(reps, 3)), want, train);

  // The dispatch table only when --only names it (about 60 timed shapes).
  std::vector<DispatchResult> dispatch;
  if (only.find("dispatch") != std::string::npos) bench_dispatch(reps, dispatch);

  nlohmann::json j;
  j["tool"] = "topk bench cuda";
  j["device"] = prop.name;
  j["sms"] = prop.multiProcessorCount;
  j["l2_bytes"] = prop.l2CacheSize;
  j["copy_gbps"] = copy_gbps;
  j["reps"] = reps;
  for (const Result& r : results) {
    nlohmann::json c;
    c["name"] = r.name;
    c["op"] = r.op;
    c["B"] = r.B;
    c["S"] = r.S;
    c["Hq"] = r.Hq;
    c["Hkv"] = r.Hkv;
    c["D"] = r.D;
    c["k"] = r.k;
    c["time_us"] = r.us;
    c["bytes"] = r.bytes;
    c["gbps"] = r.bytes / (r.us * 1e3);
    c["primary_bytes"] = r.k_bytes;
    c["primary_gbps"] = r.k_bytes / (r.us * 1e3);
    c["floor_us"] = r.bytes / (copy_gbps * 1e3);
    j["cases"].push_back(c);
  }
  for (const PrefillResult& r : prefill) {
    nlohmann::json c;
    c["name"] = r.name;
    c["path"] = r.path;
    c["budget"] = r.budget;
    c["B"] = 1;
    c["S"] = r.S;
    c["Hq"] = 32;
    c["Hkv"] = 8;
    c["D"] = 128;
    c["time_us"] = r.us;
    c["flops"] = r.flops;
    c["tflops"] = r.flops / (r.us * 1e6);
    c["dense_us"] = r.dense_us;
    c["x_dense"] = r.us / r.dense_us;
    j["prefill"].push_back(c);
  }
  for (const TrainAttnResult& r : train) {
    nlohmann::json c;
    c["name"] = r.name;
    c["budget"] = r.budget;
    c["B"] = r.B;
    c["S"] = r.S;
    c["Hq"] = 32;
    c["Hkv"] = 8;
    c["D"] = 128;
    c["time_us"] = r.us;
    c["fwd_us"] = r.fwd_us;
    c["flops"] = r.flops;
    c["tflops"] = r.flops / (r.us * 1e6);
    c["extra_bytes"] = r.extra_bytes;
    c["dense_us"] = r.dense_us;
    c["x_dense"] = r.us / r.dense_us;
    c["bytes"] = r.bytes;
    c["flop_floor_us"] = r.flops / (kBf16PeakTflops * 1e6);
    c["byte_floor_us"] = r.bytes / (copy_gbps * 1e3);
    j["train"].push_back(c);
  }
  for (const DispatchResult& r : dispatch)
    j["dispatch"].push_back({{"B", r.B}, {"S", r.S}, {"default_us", r.default_us},
                             {"threshold_us", r.threshold_us}, {"general_us", r.general_us}});
  std::string text = j.dump(2);
  if (!out.empty()) write_file_atomic(out, text + "\n");
  if (json) {
    std::printf("%s\n", text.c_str());
  } else {
    std::printf("%s, copy %.0f GB/s (read + write)\n", prop.name, copy_gbps);
    std::printf("%-28s %10s %10s %10s %9s\n", "case", "time_us", "GB/s", "floor_us", "floor/t");
    for (const Result& r : results) {
      double fl = r.bytes / (copy_gbps * 1e3);
      std::printf("%-28s %10.1f %10.0f %10.1f %8.0f%%\n", r.name.c_str(), r.us, r.bytes / (r.us * 1e3), fl, 100 * fl / r.us);
    }
    if (!prefill.empty()) {
      std::printf("\ncausal prefill forward, B=1 Hq=32 Hkv=8 D=128 bf16 (TFLOP/s: dense of 4 Hq D per "
                  "visible pair, top-k of its score product, 2 Hq D)\n");
      std::printf("%-36s %10s %9s %9s\n", "case", "time_ms", "TFLOP/s", "x_dense");
      for (const PrefillResult& r : prefill)
        std::printf("%-36s %10.2f %9.1f %9.2f\n", r.name.c_str(), r.us / 1e3, r.flops / (r.us * 1e6),
                    r.us / r.dense_us);
    }
    if (!train.empty()) {
      std::printf("\ntraining attention, forward + backward, causal, B x S = 131072 tokens, Hq=32 Hkv=8 "
                  "D=128 bf16 (TFLOP/s of the flops each must do; extra: memory beyond the tensors; "
                  "floors: the flops at %.0f TFLOP/s, the bytes that must move at the copy rate)\n",
                  kBf16PeakTflops);
      std::printf("%-28s %10s %10s %9s %9s %10s %10s %10s\n", "case", "fwd_ms", "total_ms", "TFLOP/s",
                  "x_dense", "extra_MiB", "flop_fl_ms", "byte_fl_ms");
      for (const TrainAttnResult& r : train)
        std::printf("%-28s %10.2f %10.2f %9.1f %9.2f %10.0f %10.2f %10.2f\n", r.name.c_str(), r.fwd_us / 1e3,
                    r.us / 1e3, r.flops / (r.us * 1e6), r.us / r.dense_us, r.extra_bytes / double(1 << 20),
                    r.flops / (kBf16PeakTflops * 1e9), r.bytes / (copy_gbps * 1e6));
    }
    if (!dispatch.empty()) {
      std::printf("\ntop-k decode pipelines, Hq=32 Hkv=8 D=128 bf16 k=2048 (us; 'default' is the "
                  "rule's choice, the others forced by TOPK_CUDA_TOPK_PATH)\n");
      std::printf("%4s %8s %10s %10s %10s %12s\n", "B", "S", "default", "threshold", "general", "default/best");
      for (const DispatchResult& r : dispatch)
        std::printf("%4lld %8lld %10.1f %10.1f %10.1f %12.2f\n", (long long)r.B, (long long)r.S,
                    r.default_us, r.threshold_us, r.general_us,
                    r.default_us / std::min(r.threshold_us, r.general_us));
    }
  }
  return 0;
}

}  // namespace topk::cli

#else

namespace topk::cli {
int bench_cuda(int, char**) {
  std::fprintf(stderr, "bench cuda: this build of topk has no CUDA backend\n");
  return 1;
}
}  // namespace topk::cli

#endif
