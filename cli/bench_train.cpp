// topk bench train: training step time of the transformer engine on the CPU or a GPU, full
// attention against native top-k attention (exact top-k forward with the hard selection, sparse
// backward), with the same model, the same weights and the same data, measured in the same run.
//
// One step = forward + cross-entropy + backward + clip + AdamW, as `topk train` takes it.
// Each (S, policy) row starts from the same initial weights and sees the same batches; the
// policies of one S take their steps in turn; the reported time is the median step after the
// warm-up steps. Where the time goes is measured
// inside the step: the attention ops (forward, backward) against everything else (matmuls,
// norms, RoPE, MLP activations), the loss and the optimizer.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/bench_model.h"
#include "core/device_mem.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/ops.h"
#include "model/policy.h"
#include "train/optim.h"

namespace topk::cli {
namespace {

struct TrainBenchOpts {
  int steps = 5, warmup = 1, layers = 4, d_model = 256, heads = 8, kv_heads = 2, ffn = 768;
  int vocab = 259;
  std::string device = "cpu";
  int breakdown = -1;  // time the phases; -1: on the CPU only (on CUDA it synchronises in the step)
  bool recompute = false;
  std::vector<int> S = {512, 2048};
  int batch_tokens = 2048;  // tokens per step: batch_tokens / S packed sequences of length S
  std::vector<std::string> policies;  // besides full
  int threads = 0, blas_threads = 0;
  bool json = false;
  uint64_t seed = 1;
};

struct Phase {  // milliseconds of one step
  double step = 0, fwd = 0, attn_fwd = 0, loss = 0, bwd = 0, attn_bwd = 0, optim = 0;
};

struct Row {
  int S = 0, seqs = 0;
  std::string policy;
  Phase med;  // per-phase medians
  double tokens_per_s = 0, ratio = 0;
  double first_loss = 0, last_loss = 0;
  double mem_gib = 0;  // device memory in use after the last step (GPU)
};

ModelConfig bench_model(const TrainBenchOpts& o) {
  ModelConfig c = bench_model_config(o, *std::max_element(o.S.begin(), o.S.end()));
  c.tokenizer.present = true;  // random bytes as data
  c.bos = 256, c.eos = 257, c.pad = 258;
  validate(c, "bench model");
  return c;
}

// The batch of step `step` at length S: batch_tokens / S sequences of random bytes.
Batch bench_batch(const TrainBenchOpts& o, int S, int step) {
  Rng r(o.seed * 1000003u + uint64_t(S) * 7919u + uint64_t(step));
  int nseq = std::max(1, o.batch_tokens / S);
  std::vector<std::vector<int>> seqs(size_t(nseq), std::vector<int>(size_t(S), 0));
  for (auto& s : seqs)
    for (int& t : s) t = int(r.below(256));
  return make_batch(seqs);
}

// One policy's training run at one S: its own copy of the initial weights and optimizer; the
// activations are kept between steps (as a long run would), so steps do not time page faults.
struct Runner {
  AttnPolicy pol;
  Model m;
  AdamW opt;
  Acts acts;
  Buffer grad;
  std::vector<Phase> ph;
  Row row;
};

Runner make_runner(const TrainBenchOpts& o, const ModelConfig& c, int S, const std::string& policy) {
  Runner r;
  r.pol = parse_policy(policy);
  r.m = model_create(c);
  model_init(r.m, o.seed);
  model_to(r.m, parse_device(o.device));
  r.opt = adamw_create(r.m);
  r.grad = Buffer(DType::f32, {r.m.numel}, r.m.device());
  r.acts.time_attention = o.breakdown > 0;
  r.acts.recompute = o.recompute;
  r.row.S = S;
  r.row.policy = policy_str(r.pol);
  return r;
}

void train_step(Runner& r, const Batch& b, bool measured, bool breakdown) {
  Phase p;
  const bool gpu = r.m.device() == Device::cuda;
  // Phase boundaries: on the GPU the host clock needs the device to have caught up.
  auto mark = [&]() {
    if (gpu && breakdown) device_synchronize();
    return now_seconds();
  };
  if (gpu) device_synchronize();
  double t0 = now_seconds();
  ops::zero(r.grad);
  r.acts.attn_fwd_s = r.acts.attn_bwd_s = 0;
  model_forward(r.m, b, r.pol, r.acts);
  double t1 = mark();
  const double count = loss_count(b);
  double loss = model_loss(r.m, b, r.acts, float(1 / count)) / count;
  double t2 = mark();
  model_backward(r.m, b, r.pol, r.acts, r.grad);
  double t3 = mark();
  clip_grad_norm(r.grad, 1.0f);
  adamw_step(r.opt, r.m, r.grad, 1e-3f, AdamWOpts{});
  if (gpu) device_synchronize();
  double t4 = now_seconds();
  if (gpu) r.row.mem_gib = double(device_memory_used()) / double(1ull << 30);
  if (r.opt.t == 1) r.row.first_loss = loss;
  r.row.last_loss = loss;
  r.row.seqs = int(b.cu_seqlens.size()) - 1;
  p.step = 1e3 * (t4 - t0), p.fwd = 1e3 * (t1 - t0), p.loss = 1e3 * (t2 - t1);
  p.bwd = 1e3 * (t3 - t2), p.optim = 1e3 * (t4 - t3);
  p.attn_fwd = 1e3 * r.acts.attn_fwd_s, p.attn_bwd = 1e3 * r.acts.attn_bwd_s;
  if (measured) r.ph.push_back(p);
}

void finish(Runner& r) {
  auto med = [&](double Phase::*f) {
    std::vector<double> v;
    for (const Phase& p : r.ph) v.push_back(p.*f);
    return median(v);
  };
  r.row.med = {med(&Phase::step), med(&Phase::fwd), med(&Phase::attn_fwd), med(&Phase::loss),
               med(&Phase::bwd), med(&Phase::attn_bwd), med(&Phase::optim)};
  r.row.tokens_per_s = double(r.row.seqs) * r.row.S / (r.row.med.step * 1e-3);
}

}  // namespace

int bench_train_dist(int argc, char** argv);  // bench_train_dist.cpp

int bench_train(int argc, char** argv) {
  for (int i = 1; i < argc; i++)  // data-parallel over several GPUs: its own benchmark
    if (std::string(argv[i]) == "--gpus") return bench_train_dist(argc, argv);
  TrainBenchOpts o;
  CLI::App app("Training step time: full attention vs native top-k attention (exact top-k "
               "forward, sparse backward), same model, weights and data, same run.",
               "topk bench train");
  app.footer("With --gpus N: data-parallel throughput over N GPUs, its own options (topk bench "
             "train --gpus 1 --help).");
  add_int(app, "--steps", o.steps, 1, 1 << 24, "measured steps per row (default 5), median reported");
  add_int(app, "--warmup", o.warmup, 0, 1 << 24, "unmeasured steps first (default 1)");
  add_device(app, o.device, "cpu");
  // a step needs a next-token target: S >= 2
  add_int_list(app, "--S", o.S, 2, 1 << 24, "sequence lengths, comma separated (default 512,2048)");
  add_int(app, "--batch-tokens", o.batch_tokens, 1, 1 << 24, "tokens per step (default 2048): N/S "
          "packed sequences");
  add_model_shape(app, o, 259);  // the byte tokenizer's ids
  app.add_flag_callback("--breakdown", [&o] { o.breakdown = 1; }, "time the phases inside a step "
                        "(default: on the CPU only; on CUDA it needs synchronisations in the step)");
  app.add_flag_callback("--no-breakdown", [&o] { o.breakdown = 0; }, "do not time the phases");
  app.add_flag("--recompute", o.recompute, "recompute activations in the backward");
  app.add_option("--policy", o.policies, "a training attention policy to compare with full; "
                 "repeatable (default topk:k=64 and topk:ratio=0.05)")->allow_extra_args(false);
  add_threads(app, o.threads)->description("OpenMP and OpenBLAS threads (default: as configured)");
  add_int(app, "--blas-threads", o.blas_threads, 1, max_threads(), "OpenBLAS threads only (after --threads)");
  add_seed(app, "--seed", o.seed, "weights and data (default 1)");
  app.add_flag("--json", o.json, "one JSON object per row instead of the table");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  if (o.policies.empty()) o.policies = {"topk:k=64", "topk:ratio=0.05"};
  for (const std::string& p : o.policies) {
    TOPK_CHECK(parse_policy(p).is_topk(), "--policy '%s': compare a top-k policy with full (full is "
               "always measured)", p.c_str());
  }
  if (o.threads) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  if (o.blas_threads) openblas_set_num_threads(o.blas_threads);
  ModelConfig c = bench_model(o);
  Model probe = model_create(c);
  const bool gpu = parse_device(o.device) == Device::cuda;
  if (o.breakdown < 0) o.breakdown = gpu ? 0 : 1;
  // Dense-model FLOPs per token: the matmuls of every weight but the embedding lookup, three
  // times (forward, two backward products), and causal attention's QK^T and PV likewise.
  const double matmul_params = double(model_param_count(probe)) -
                               (c.tie_embeddings ? 0.0 : double(c.vocab) * c.hidden);
  auto flops_per_token = [&](int S) {
    return 6.0 * matmul_params + 12.0 * c.layers * c.heads * c.head_dim * (S + 1) / 2.0;
  };
  int threads = omp_get_max_threads(), blas = openblas_get_num_threads();
  double load[3] = {0, 0, 0};  // the machine's load: other work there skews every timing
  getloadavg(load, 3);
  char cfg[160];
  std::snprintf(cfg, sizeof cfg, "L=%d d=%d Hq=%d Hkv=%d D=%d ffn=%d V=%d", c.layers, c.hidden,
                c.heads, c.kv_heads, c.head_dim, c.inter, c.vocab);
  if (!o.json) {
    if (gpu)
      std::printf("topk bench train: CUDA (bf16 operands, f32 master weights and accumulation); "
                  "median of %d steps after %d warm-up%s\n",
                  o.steps, o.warmup, o.breakdown ? "; phases timed with synchronisations" : "");
    else
      std::printf("topk bench train: CPU, %d OpenMP threads, %d OpenBLAS threads, load average "
                "%.2f at start; median of %d steps after %d warm-up\n",
                threads, blas, load[0], o.steps, o.warmup);
    std::printf(
                "model: Llama %s, %.2fM parameters; %d tokens per step "
                "(packed sequences of length S, random bytes)\n"
                "step = forward + loss + backward + clip + AdamW; ms columns are medians; "
                "'other' = matmuls, norms, RoPE, MLP; TFLOP/s and MFU count the dense model's "
                "FLOPs\n(6 x non-embedding parameters + 12 L Hq D (S+1)/2 per token) against a "
                "989 TFLOP/s bf16 peak\n\n",
                cfg, model_param_count(probe) / 1e6, o.batch_tokens);
    std::printf("%6s %4s  %-18s %9s %8s %7s %8s %5s %7s | %8s %8s %8s %8s %6s %6s  %s\n", "S",
                "seqs", "policy", "step ms", "tok/s", "vs full", "TFLOP/s", "MFU", "mem GiB",
                "attn fwd", "attn bwd", "othr fwd", "othr bwd", "loss", "optim",
                "loss first->last");
  }
  for (int S : o.S) {
    // The policies take their steps in turn (step 0 of each, then step 1, ...), so a change in
    // the machine's load during the run falls on all of them alike.
    std::vector<Runner> rs;
    rs.push_back(make_runner(o, c, S, "full"));
    for (const std::string& pol : o.policies) rs.push_back(make_runner(o, c, S, pol));
    for (int step = 0; step < o.warmup + o.steps; step++) {
      Batch b = bench_batch(o, S, step);
      for (Runner& r : rs) train_step(r, b, step >= o.warmup, o.breakdown > 0);
    }
    for (Runner& rn : rs) {
      finish(rn);
      Row& r = rn.row;
      r.ratio = r.med.step / rs[0].row.med.step;
      const Phase& p = r.med;
      const double tflops = r.tokens_per_s * flops_per_token(S) / 1e12, mfu = tflops / 989.0;
      if (o.json) {
        nlohmann::json j = {
            {"name", "train_step"}, {"config", cfg}, {"policy", r.policy}, {"S", S},
            {"seqs", r.seqs}, {"tokens_per_step", r.seqs * S}, {"median_step_ms", p.step},
            {"tokens_per_s", r.tokens_per_s}, {"ratio_vs_full", r.ratio}, {"threads", threads},
            {"blas_threads", blas}, {"load_avg_1m", load[0]}, {"steps", o.steps}, {"warmup", o.warmup},
            {"breakdown_ms", {{"attn_fwd", p.attn_fwd}, {"attn_bwd", p.attn_bwd},
                              {"other_fwd", p.fwd - p.attn_fwd}, {"other_bwd", p.bwd - p.attn_bwd},
                              {"loss", p.loss}, {"optim", p.optim}}},
            {"loss_first", r.first_loss}, {"loss_last", r.last_loss},
            {"device", gpu ? "cuda" : "cpu"}, {"tflops", tflops}, {"mfu", mfu},
            {"mem_gib", r.mem_gib}, {"params", model_param_count(probe)}};
        // Without synchronised phase marks the GPU's phase times are launch times: none then.
        if (gpu && o.breakdown <= 0) j.erase("breakdown_ms");
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%6d %4d  %-18s %9.1f %8.0f %7.2f %8.1f %5.2f %7.2f | ", S, r.seqs,
                    r.policy.c_str(), p.step, r.tokens_per_s, r.ratio, tflops, mfu, r.mem_gib);
        if (gpu && o.breakdown <= 0)  // phase marks were not synchronised: launch times only
          std::printf("%8s %8s %8s %8s %6s %6s", "-", "-", "-", "-", "-", "-");
        else
          std::printf("%8.1f %8.1f %8.1f %8.1f %6.1f %6.1f", p.attn_fwd, p.attn_bwd,
                      p.fwd - p.attn_fwd, p.bwd - p.attn_bwd, p.loss, p.optim);
        std::printf("  %.3f->%.3f\n", r.first_loss, r.last_loss);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace topk::cli
