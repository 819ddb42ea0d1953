// topk bench generate: decode step time of the transformer engine at long context, full
// attention against top-k decoding, against the memory floor of a step, on one device.
//
// For each (batch B, context S): random token prompts of S tokens are prefilled with full
// attention (in chunks), then decode steps of one token per sequence are timed under each
// policy from a copy of that cache (so every policy sees the same keys). A step's floor is the
// bytes it must read (the bf16 weights once, plus every cached key and value for full attention,
// or every key and only the k selected values for top-k) over the copy bandwidth measured in
// the same run (device-to-device copy, bytes read plus written).
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/bench_model.h"
#include "core/device_mem.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/infer.h"
#include "model/views.h"

namespace topk::cli {
namespace {

struct GenBenchOpts {
  int layers = 12, d_model = 768, heads = 12, kv_heads = 4, ffn = 2048, vocab = 32000;
  std::vector<int> S = {32768, 131072}, B = {1, 8};
  std::vector<std::string> policies = {"full", "topk:k=2048"};
  int steps = 20, warmup = 3, chunk = 8192;
  std::string device = "auto";
  bool json = false;
  uint64_t seed = 1;
};

// Device-to-device copy rate in GB/s (bytes read plus written), median of 10 copies of 1 GiB.
double copy_gbps(Device dev) {
  const int64_t n = int64_t(1) << 28;  // f32 elements: 1 GiB
  Buffer a(DType::f32, {n}, dev), b(DType::f32, {n}, dev);
  std::vector<double> t;
  for (int i = 0; i < 12; i++) {
    if (dev == Device::cuda) device_synchronize();
    double t0 = now_seconds();
    copy(b, a);
    if (dev == Device::cuda) device_synchronize();
    if (i >= 2) t.push_back(now_seconds() - t0);
  }
  return 2.0 * double(n) * 4 / median(t) / 1e9;
}

}  // namespace

int bench_generate(int argc, char** argv) {
  GenBenchOpts o;
  CLI::App app("Decode step time at long context: full attention vs top-k decoding, same model "
               "and cache, against the step's memory floor, in one run.", "topk bench generate");
  std::vector<std::string> pols;
  add_device(app, o.device, "auto");
  add_int_list(app, "--S", o.S, 1, 1 << 24, "contexts, comma separated (default 32768,131072)");
  add_int_list(app, "--batch", o.B, 1, 1 << 16, "sequences per step, comma separated (default 1,8)");
  app.add_option("--policy", pols, "decode policy, repeatable (default full and topk:k=2048)")
      ->allow_extra_args(false)->type_name("P");
  add_int(app, "--steps", o.steps, 1, 1 << 24, "timed steps (default 20), median reported");
  add_int(app, "--warmup", o.warmup, 0, 1 << 24, "untimed steps first (default 3)");
  add_int(app, "--chunk", o.chunk, 1, 1 << 24, "prefill tokens per sequence per call (default 8192)");
  add_model_shape(app, o, 2);  // Llama-shaped, random weights
  add_seed(app, "--seed", o.seed, "weights and prompts (default 1)");
  app.add_flag("--json", o.json, "one JSON object per row");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  if (!pols.empty()) o.policies = pols;
  std::vector<AttnPolicy> policies;
  for (const auto& p : o.policies) policies.push_back(parse_policy(p));
  const Device dev = parse_device(o.device);
  const ModelConfig c = bench_model_config(
      o, *std::max_element(o.S.begin(), o.S.end()) + o.warmup + o.steps + 1);
  Model m = model_create(c);
  model_init(m, o.seed);
  model_to(m, dev, false);  // inference: the bf16 weights only on CUDA
  const int64_t wbytes = model_weight_bytes(m);
  const int64_t kv_row = int64_t(c.kv_dim()) * int64_t(dtype_size(m.compute()));  // per layer
  if (dev == Device::cpu) {  // the base cache and one policy's copy at the largest B and S
    const double rows = double(*std::max_element(o.B.begin(), o.B.end())) * c.max_pos;
    const double caches = 2.0 * 2.0 * c.layers * rows * double(kv_row);  // K and V, twice
    check_memory(caches + double(m.numel) * 4 + 2.0 * (1 << 30),
                 "the model, two KV caches (--batch x --S) and the copy test's 2 GiB");
  }
  const double gbps = copy_gbps(dev);
  if (!o.json)
    std::printf("topk bench generate: %s, Llama L=%d d=%d Hq=%d Hkv=%d D=%d ffn=%d V=%d "
                "(%.1fM parameters, %.0f MB of weights read per step), random weights and "
                "prompts; copy rate %.0f GB/s; median of %d steps after %d warm-up\n\n"
                "%2s %7s  %-14s %9s %9s %9s %7s %9s\n",
                device_name(dev), c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.inter,
                c.vocab, m.numel / 1e6, wbytes / 1e6, gbps, o.steps, o.warmup, "B", "S", "policy",
                "step ms", "tok/s", "floor ms", "/floor", "speedup");
  for (int B : o.B)
    for (int S : o.S) {
      const int cap = S + o.warmup + o.steps + 1;
      Rng rng(o.seed * 7919u + uint64_t(S) + uint64_t(B) * 131u);
      KVCache base = kv_cache_create(m, B, cap);
      StepScratch s;
      StepOpts so;
      so.scratch = &s;
      std::vector<float> logits;
      if (dev == Device::cuda) device_synchronize();
      const double p0 = now_seconds();
      for (int at = 0; at < S; at += o.chunk) {
        const int n = std::min(o.chunk, S - at);
        std::vector<std::vector<int>> in(static_cast<size_t>(B), std::vector<int>(static_cast<size_t>(n)));
        for (auto& v : in)
          for (int& t : v) t = int(rng.below(uint64_t(c.vocab)));
        model_step(m, base, in, AttnPolicy{}, logits, so);
      }
      const double prefill_s = now_seconds() - p0;
      double full_ms = 0;
      for (size_t pi = 0; pi < policies.size(); pi++) {
        const AttnPolicy& pol = policies[pi];
        KVCache kc = kv_cache_create(m, B, cap);
        kv_cache_copy(kc, base);
        std::vector<std::vector<int>> in(static_cast<size_t>(B), std::vector<int>(1));
        std::vector<double> t;
        for (int step = 0; step < o.warmup + o.steps; step++) {
          for (auto& v : in) v[0] = int(rng.below(uint64_t(c.vocab)));
          if (dev == Device::cuda) device_synchronize();
          const double t0 = now_seconds();
          model_step(m, kc, in, pol, logits, so);  // ends by copying the logits to the host
          if (step >= o.warmup) t.push_back(now_seconds() - t0);
        }
        const double ms = 1e3 * median(t);
        if (pi == 0) full_ms = ms;
        // Bytes a step must read: weights once, then per layer and sequence every key and, for
        // full attention, every value; top-k reads only the selected values.
        const double n = double(S) + o.warmup + o.steps / 2.0;
        const double kv_keys = double(c.layers) * B * n * kv_row;
        const double values = pol.kind == PolicyKind::full
                                  ? kv_keys
                                  : double(c.layers) * B * double(kv_row) *
                                        std::min(n, double(select_capacity(pol.sel, int64_t(n))));
        const double floor_ms = 1e3 * (double(wbytes) + kv_keys + values) / (gbps * 1e9);
        if (o.json) {
          nlohmann::json j = {{"name", "decode_step"}, {"device", device_name(dev)},
                              {"policy", policy_str(pol)}, {"B", B}, {"S", S},
                              {"median_step_ms", ms}, {"tokens_per_s", B / (ms * 1e-3)},
                              {"floor_ms", floor_ms}, {"ratio_vs_floor", ms / floor_ms},
                              {"ratio_vs_first_policy", ms / full_ms}, {"copy_gbps", gbps},
                              {"prefill_s", prefill_s}, {"params", m.numel},
                              {"steps", o.steps}};
          std::printf("%s\n", j.dump().c_str());
        } else {
          std::printf("%2d %7d  %-14s %9.3f %9.1f %9.3f %7.2f %9.2f\n", B, S,
                      policy_str(pol).c_str(), ms, B / (ms * 1e-3), floor_ms, ms / floor_ms,
                      full_ms / ms);
        }
        std::fflush(stdout);
      }
      if (!o.json)
        std::printf("   (prefill of %d x %d tokens with full attention: %.1f s, %.0f tok/s)\n", B,
                    S, prefill_s, double(B) * S / prefill_s);
    }
  return 0;
}

}  // namespace topk::cli
