// topk bench attention: CPU decode, full attention vs exact top-k attention, against the
// machine's read bandwidth measured in the same run.
//
//   scan     read-only multi-threaded sum over a buffer much larger than the LLC: the roof
//   full     attention_forward (cpu), T = 1: reads all of K and V
//   scores   attention_scores (cpu), T = 1: the K scan of top-k on its own (writes [Hq, S])
//   topk     topk_attention_forward (cpu), T = 1: reads all of K, then only the selected V rows
//
// Bytes are counted from what each op must touch: q, o, lse, K, V (full: all rows; top-k:
// the selected rows, once per selection row that lists them), scores and indices written.
// "K GB/s" of top-k is K bytes / total top-k time (the conservative number: selection and the
// V gather are charged to the K read). Timings: warm-up, then the median of --repeats runs.
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "attention/cpu/isa.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "core/timer.h"
#include "topk/attention.h"

namespace topk::cli {
namespace {

struct Opts {
  int B = 1, S = 32768, Hq = 32, Hkv = 8, D = 128, k = 1024;
  int threads = 0, repeats = 20, warmup = 3;
  int64_t scan_mib = 1024;
  std::string dtype = "f32";
  bool json = false, hugepages = true;
};

// Parses the options; false after --help or a usage error (*rc says which).
bool parse(int argc, char** argv, Opts& o, int* rc) {
  CLI::App app("CPU decode: full attention vs exact top-k attention, against the machine's read "
               "bandwidth. The CPU kernels are the best this CPU runs; "
               "TOPK_CPU_ISA=scalar|avx2|avx512 forces a copy.", "topk bench attention");
  add_int(app, "--B", o.B, 1, 4096, "batch (1)");
  add_int(app, "--S", o.S, 1, INT32_MAX, "keys (32768)");
  add_int(app, "--Hq", o.Hq, 1, 1024, "query heads (32)");
  add_int(app, "--Hkv", o.Hkv, 1, 1024, "KV heads (8)");
  add_int(app, "--D", o.D, 1, 2048, "head dim (128)");
  add_int(app, "--k", o.k, 1, INT32_MAX, "top-k per head (1024)");
  add_text(app, "--dtype", o.dtype, "K/V dtype: f32 | bf16 (f32)")->check(CLI::IsMember({"f32", "bf16"}));
  add_threads(app, o.threads);
  add_int(app, "--repeats", o.repeats, 1, 1000000, "timed runs (20)");
  add_int(app, "--scan-mib", o.scan_mib, 1, 1 << 24, "size of the bandwidth scan buffer in MiB (1024)");
  bool no_huge = false;
  app.add_flag("--no-hugepages", no_huge, "do not ask for transparent huge pages on the big buffers");
  app.add_flag("--json", o.json, "also print one JSON object per line");
  *rc = cli::parse(app, argc, argv);
  o.hugepages = !no_huge;
  if (*rc >= 0) return false;
  // K and V, the scores and the scan buffer are allocated at once: check they fit first.
  double kv = 2.0 * o.B * double(o.S) * o.Hkv * o.D * (o.dtype == "bf16" ? 2 : 4);
  double scores = double(o.B) * o.Hq * (double(o.S) + o.k) * 4;
  check_memory(kv + scores + double(o.scan_mib) * 1048576.0, "bench attention: K, V, scores and "
               "the scan buffer");
  return true;
}

// Page-aligned memory, with transparent huge pages requested before the first touch (as a KV
// cache allocator would), so that long strided scans are not dominated by TLB misses.
struct Mem {
  void* p = nullptr;
  size_t n = 0;
  Mem(size_t bytes, bool huge) : n((bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20)) {
    p = std::aligned_alloc(2u << 20, n);
    TOPK_CHECK(p, "bench attention: out of memory (%zu bytes)", n);
    if (huge) madvise(p, n, MADV_HUGEPAGE);
    std::memset(p, 0, n);
  }
  ~Mem() { std::free(p); }
};

struct Timing {
  double median_ms, min_ms;
};

template <class F>
Timing time_ms(int warmup, int repeats, F fn) {
  for (int i = 0; i < warmup; i++) fn();
  std::vector<double> t;
  for (int i = 0; i < repeats; i++) {
    double t0 = now_seconds();
    fn();
    t.push_back((now_seconds() - t0) * 1e3);
  }
  return {median(t), *std::min_element(t.begin(), t.end())};
}

// The CPU model, for the report.
std::string cpu_model() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "unknown CPU";
  char line[512];
  std::string m = "unknown CPU";
  while (std::fgets(line, sizeof(line), f)) {
    if (!std::strncmp(line, "model name", 10)) {
      const char* c = std::strchr(line, ':');
      if (c) m = std::string(c + 2, std::strcspn(c + 2, "\n"));
      break;
    }
  }
  std::fclose(f);
  return m;
}

// Read-only sum over the buffer, static split over the threads, 4 independent accumulators so
// the loop is limited by loads, not by the add latency.
float scan(const float* x, int64_t n) {
  float total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
  for (int64_t b = 0; b < n / 4096; b++) {
    float a[32] = {};
    const float* p = x + b * 4096;
    for (int i = 0; i < 4096; i += 32)
#pragma omp simd
      for (int j = 0; j < 32; j++) a[j] += p[i + j];
    for (float v : a) total += v;
  }
  return total;
}

}  // namespace

int bench_attention(int argc, char** argv) {
  Opts o;
  int rc = 0;
  if (!parse(argc, argv, o, &rc)) return rc;
  if (o.threads > 0) omp_set_num_threads(o.threads);
  int threads = omp_get_max_threads();
  DType kv = o.dtype == "bf16" ? DType::bf16 : DType::f32;
  size_t es = dtype_size(kv);
  int64_t kv_elems = int64_t(o.B) * o.S * o.Hkv * o.D, q_elems = int64_t(o.B) * o.Hq * o.D;

  // Inputs: random normal q, K, V (K/V in the chosen dtype).
  Mem kmem(kv_elems * es, o.hugepages), vmem(kv_elems * es, o.hugepages);
  TensorView k = make_view(kmem.p, kv, {o.B, o.S, o.Hkv, o.D});
  TensorView v = make_view(vmem.p, kv, {o.B, o.S, o.Hkv, o.D});
  Buffer q(DType::f32, {o.B, 1, o.Hq, o.D}), out(DType::f32, {o.B, 1, o.Hq, o.D}),
      lse(DType::f32, {o.B, 1, o.Hq});
  {
    Rng rng(7);
    for (int64_t i = 0; i < q_elems; i++) q.ptr<float>()[i] = rng.normal();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < 256; c++) {
      Rng r(1000 + c);
      for (int64_t i = c * kv_elems / 256; i < (c + 1) * kv_elems / 256; i++) {
        store_f32(k.data, kv, i, r.normal());
        store_f32(v.data, kv, i, r.normal());
      }
    }
  }
  SelectOpts sel;
  sel.k = o.k;
  int64_t K = select_capacity(sel, o.S);
  Buffer idx(DType::i32, {o.B, 1, o.Hq, K}), scores(DType::f32, {o.B, 1, o.Hq, o.S});
  AttnOpts ao;
  ao.backend = Backend::cpu;
  Seqs seqs;

  // (a) bandwidth roof.
  double scan_bytes = double(o.scan_mib << 20);
  Timing scan_t;
  {
    Mem smem(size_t(scan_bytes), o.hugepages);
    float* x = static_cast<float*>(smem.p);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < int64_t(scan_bytes / 4); i++) x[i] = 1.0f;
    volatile float sink = 0;
    scan_t = time_ms(2, o.repeats, [&] { sink = scan(x, int64_t(scan_bytes / 4)); });
    (void)sink;
  }
  double scan_gbs = scan_bytes / scan_t.median_ms * 1e-6;

  // (b) full attention decode, (c) scores alone, (d) exact top-k decode.
  double kv_bytes = double(kv_elems) * es, qo_bytes = double(q_elems) * 8 + o.B * o.Hq * 4.0;
  Timing full_t = time_ms(o.warmup, o.repeats,
                          [&] { attention_forward(q, k, v, seqs, ao, out, lse); });
  Timing sc_t = time_ms(o.warmup, o.repeats, [&] { attention_scores(q, k, seqs, ao, scores); });
  Timing topk_t = time_ms(o.warmup, o.repeats, [&] {
    topk_attention_forward(q, k, v, seqs, ao, sel, out, lse, idx);
  });
  double full_ms = full_t.median_ms;
  int64_t selected = 0;
  for (int64_t i = 0; i < idx.numel(); i++) selected += idx.ptr<int32_t>()[i] >= 0;

  struct Row {
    const char* name;
    Timing t;
    double bytes, kbytes;
  };
  double row_bytes = double(o.D) * es;
  Row rows[] = {
      {"scan", scan_t, scan_bytes, 0},
      {"full", full_t, 2 * kv_bytes + qo_bytes, kv_bytes},
      {"scores", sc_t, kv_bytes + double(o.B) * o.Hq * o.S * 4 + q_elems * 4.0, kv_bytes},
      {"topk", topk_t, kv_bytes + selected * row_bytes + qo_bytes + idx.numel() * 4.0, kv_bytes},
  };
  char shape[160];
  std::snprintf(shape, sizeof(shape), "B=%d S=%d Hq=%d Hkv=%d D=%d %s k=%d", o.B, o.S, o.Hq,
                o.Hkv, o.D, o.dtype.c_str(), o.k);
  const char* isa = cpu::isa_name(cpu::isa());
  std::printf("CPU attention decode: %s, %d threads, %s kernels; %s%s\n", cpu_model().c_str(),
              threads, isa, shape, o.hugepages ? "" : " (no huge pages)");
  std::printf("%-7s %10s %9s %9s %8s %9s %10s %8s\n", "name", "median_ms", "min_ms", "GB/s",
              "of_scan", "K_GB/s", "K_of_scan", "vs_full");
  for (const Row& r : rows) {
    double ms = r.t.median_ms, gbs = r.bytes / ms * 1e-6, kgbs = r.kbytes / ms * 1e-6;
    std::printf("%-7s %10.3f %9.3f %9.2f %7.0f%% ", r.name, ms, r.t.min_ms, gbs, 100 * gbs / scan_gbs);
    if (r.kbytes > 0) std::printf("%9.2f %9.0f%% %7.2fx\n", kgbs, 100 * kgbs / scan_gbs, full_ms / ms);
    else std::printf("%9s %10s %8s\n", "-", "-", "-");
  }
  std::printf("GB/s, ratios: from the median. top-k reads %lld selected V rows (%.1f%% of V); "
              "K_GB/s = K bytes / whole op time\n",
              (long long)selected, 100.0 * double(selected) / (double(o.B) * o.Hq * o.S));
  if (o.json) {
    for (const Row& r : rows) {
      nlohmann::json j;
      j["name"] = r.name;
      j["shape"] = r.name == std::string("scan") ? std::to_string(o.scan_mib) + " MiB" : shape;
      j["median_ms"] = r.t.median_ms;
      j["min_ms"] = r.t.min_ms;
      j["bytes"] = r.bytes;
      j["gb_per_s"] = r.bytes / r.t.median_ms * 1e-6;
      j["scan_gb_per_s"] = scan_gbs;
      j["threads"] = threads;
      j["isa"] = isa;
      if (r.kbytes > 0) {
        j["k_gb_per_s"] = r.kbytes / r.t.median_ms * 1e-6;
        j["ratio_vs_full"] = full_ms / r.t.median_ms;
      }
      std::printf("%s\n", j.dump().c_str());
    }
  }
  return 0;
}

}  // namespace topk::cli
