// Host-side state shared by the CUDA ops: the uploaded sequence table (re-sent only when it
// changes, so a decode loop pays no copy), growing workspaces, and device properties.
// Not thread-safe: one host thread drives the CUDA backend at a time.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "attention/cuda/common.cuh"

namespace topk::cuda {

namespace {
struct Context {
  int device = -1;
  int sms = 0;
  int wgmma = -1;  // has_wgmma(), once known
  DSeq* seq_dev = nullptr;
  size_t seq_cap = 0;
  std::vector<DSeq> seq_last;
  void* ws[kWsCount] = {};
  size_t ws_cap[kWsCount] = {};
  void* tab[kTabCount] = {};
  size_t tab_cap[kTabCount] = {};
  std::vector<char> tab_last[kTabCount];
  void* stream = nullptr;  // the stream of the previous call (topk::set_cuda_stream)
};
Context& ctx() {
  static Context c;
  int dev = 0;
  TOPK_CUDA(cudaGetDevice(&dev));
  if (dev != c.device) {  // a new device: drop the cache of the old one
    c = Context();
    c.device = dev;
    TOPK_CUDA(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, dev));
    c.stream = topk::cuda_stream();
  }
  if (topk::cuda_stream() != c.stream) {
    // Another stream: kernels on the old one may still use the workspaces and tables, and the
    // cached tables were written in its order. Wait for the device once, then start afresh.
    TOPK_CUDA(cudaDeviceSynchronize());
    c.stream = topk::cuda_stream();
    c.seq_last.clear();
    for (auto& t : c.tab_last) t.clear();
  }
  return c;
}
}  // namespace

cudaStream_t stream() { return static_cast<cudaStream_t>(topk::cuda_stream()); }

int num_sms() { return ctx().sms; }

bool has_wgmma() {
  Context& c = ctx();
  if (c.wgmma < 0) {
    int major = 0, minor = 0;
    TOPK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c.device));
    TOPK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, c.device));
    c.wgmma = major == 9 && minor == 0;
  }
  return c.wgmma;
}

void allow_smem_impl(const void* kernel, size_t bytes) {
  static std::mutex mu;
  static std::unordered_map<const void*, size_t> raised;
  // No shortcut under the default 48 KiB: the limit covers dynamic plus static shared memory, so
  // a kernel with static buffers needs the attribute for less dynamic memory than that.
  std::lock_guard<std::mutex> lock(mu);
  size_t& have = raised[kernel];
  if (bytes > have) {
    TOPK_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    have = bytes;
  }
}

SeqTable upload_seqs(const AttnParams& p) {
  Context& c = ctx();
  std::vector<DSeq> h(size_t(p.nseq));
  SeqTable t;
  int64_t r0 = 0;
  for (int i = 0; i < p.nseq; i++) {
    const SeqDesc& s = p.seqs[i];
    h[i] = {s.batch, s.q_start, s.T, s.k_start, s.S, s.q_pos, int32_t(r0)};
    r0 += s.T;
    if (s.T > t.max_T) t.max_T = s.T;
  }
  TOPK_CHECK(r0 < (int64_t(1) << 31), "cuda: more than 2^31 query rows in one call");
  t.n = p.nseq;
  t.rows = r0;
  if (h.size() > c.seq_cap) {
    if (c.seq_dev) cudaFree(c.seq_dev);
    c.seq_dev = nullptr;
    c.seq_cap = 0;
    c.seq_last.clear();
    size_t cap = h.size() < 64 ? 64 : h.size() * 2;
    TOPK_CUDA(cudaMalloc(&c.seq_dev, cap * sizeof(DSeq)));
    c.seq_cap = cap;
  }
  bool same = c.seq_last.size() == h.size() &&
              (h.empty() || std::memcmp(c.seq_last.data(), h.data(), h.size() * sizeof(DSeq)) == 0);
  if (!same && !h.empty()) {
    // Stream-ordered after earlier kernels that read the old table.
    TOPK_CUDA(cudaMemcpyAsync(c.seq_dev, h.data(), h.size() * sizeof(DSeq),
                              cudaMemcpyHostToDevice, stream()));
    c.seq_last = h;
  }
  t.d = c.seq_dev;
  return t;
}

void* workspace(int slot, size_t bytes) {
  Context& c = ctx();
  if (bytes < 256) bytes = 256;
  if (bytes > c.ws_cap[slot]) {
    if (c.ws[slot]) {
      TOPK_CUDA(cudaDeviceSynchronize());  // earlier kernels may still use the old buffer
      cudaFree(c.ws[slot]);
    }
    c.ws[slot] = nullptr;
    c.ws_cap[slot] = 0;
    TOPK_CUDA(cudaMalloc(&c.ws[slot], bytes));
    c.ws_cap[slot] = bytes;
  }
  return c.ws[slot];
}

size_t workspace_size(int slot) { return ctx().ws_cap[slot]; }

const void* upload_table(int slot, const void* host, size_t bytes) {
  Context& c = ctx();
  std::vector<char>& last = c.tab_last[slot];
  if (bytes > c.tab_cap[slot]) {
    if (c.tab[slot]) {
      TOPK_CUDA(cudaDeviceSynchronize());  // earlier kernels may still read the old table
      cudaFree(c.tab[slot]);
    }
    c.tab[slot] = nullptr;
    c.tab_cap[slot] = 0;
    last.clear();
    size_t cap = bytes < 4096 ? 4096 : bytes * 2;
    TOPK_CUDA(cudaMalloc(&c.tab[slot], cap));
    c.tab_cap[slot] = cap;
  }
  if (bytes > 0 && (last.size() != bytes || std::memcmp(last.data(), host, bytes) != 0)) {
    // Stream-ordered after earlier kernels that read the old table.
    TOPK_CUDA(cudaMemcpyAsync(c.tab[slot], host, bytes, cudaMemcpyHostToDevice, stream()));
    last.assign(static_cast<const char*>(host), static_cast<const char*>(host) + bytes);
  }
  return c.tab[slot];
}

size_t score_rows_budget() {
  const char* e = std::getenv("TOPK_CUDA_WORKSPACE_BUDGET");
  if (e && *e) return workspace_budget();
  // A 64th of the device's memory within [kWorkspaceBudget, kScoreRowsBudgetMax]: larger
  // chunks keep the products and the selection launches large (H200, causal prefill at
  // S = 32K, ratio 0.01: 203 ms at 256 MiB, 156 ms at 2 GiB; docs/benchmarks.md).
  static const size_t budget = [] {
    int dev = 0;
    TOPK_CUDA(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    TOPK_CUDA(cudaGetDeviceProperties(&prop, dev));
    return std::min(kScoreRowsBudgetMax, std::max(kWorkspaceBudget, prop.totalGlobalMem / 64));
  }();
  return budget;
}

size_t workspace_budget() {
  const char* e = std::getenv("TOPK_CUDA_WORKSPACE_BUDGET");
  if (!e || !*e) return kWorkspaceBudget;
  char* end = nullptr;
  const long long v = std::strtoll(e, &end, 10);
  TOPK_CHECK(end && *end == 0 && v > 0, "TOPK_CUDA_WORKSPACE_BUDGET=%s: expected a byte count > 0", e);
  return size_t(v);
}

size_t workspace_bytes() {
  Context& c = ctx();
  size_t n = 0;
  for (int i = 0; i < kWsCount; i++) n += c.ws_cap[i];
  return n;
}

void workspace_release() {
  Context& c = ctx();
  TOPK_CUDA(cudaDeviceSynchronize());
  for (int i = 0; i < kWsCount; i++) {
    if (c.ws[i]) cudaFree(c.ws[i]);
    c.ws[i] = nullptr;
    c.ws_cap[i] = 0;
  }
}

int choose_splits(int64_t items, int64_t keys, int blocks_per_sm, int max_splits) {
  int64_t slots = int64_t(num_sms()) * (blocks_per_sm > 0 ? blocks_per_sm : 1);
  int64_t tiles = (keys + kTile - 1) / kTile;
  int64_t lim = tiles < max_splits ? tiles : max_splits;
  if (lim < 1) lim = 1;
  if (items >= 4 * slots) return 1;
  int best = 1;
  double best_cost = 1e30;
  for (int64_t ns = 1; ns <= lim; ns++) {
    // Time ~ waves * (tiles per split + a wave's start and drain, ~2 tiles), plus a small cost
    // per split for the combine. Without the per-wave term, B=8 S=128K full attention took
    // 41 splits (10 waves, the best quantisation) and ran 1.5-3% slower than with 4-12.
    int64_t per = (tiles + ns - 1) / ns;
    int64_t waves = (items * ns + slots - 1) / slots;
    double cost = double(waves * (per + 2)) + 0.02 * double(ns);
    if (cost < best_cost - 1e-9) {
      best_cost = cost;
      best = int(ns);
    }
  }
  return best;
}

}  // namespace topk::cuda
