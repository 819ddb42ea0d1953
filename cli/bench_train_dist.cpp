// topk bench train --gpus N: data-parallel training throughput over N GPUs of this host, the
// same step as `topk train --gpus N` (shards of one global batch, bucketed NCCL all-reduce
// overlapped with the backward, clip, AdamW). Run it with N = 1 and N = 2 on the same global
// batch for the scaling; bench/ddp_baseline.py measures PyTorch DDP on the same model and
// batch shapes. --gpus 1 runs the NCCL path with one rank (its overhead against plain
// `topk bench train --device cuda`).
//
// Every rank builds the same weights from the seed and the same global batches (random bytes,
// packed sequences of length S); a step's time is rank 0's wall time from a synchronised start
// to the end of AdamW, which the all-reduces tie to the slowest rank. tokens/s counts the
// global batch.
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
#include "train/dist.h"
#include "train/optim.h"

namespace topk::cli {
namespace {

struct DistBenchOpts {
  int gpus = 1, steps = 10, warmup = 3, S = 4096, batch_tokens = 32768;
  int layers = 12, d_model = 768, heads = 12, kv_heads = 4, ffn = 2048, vocab = 32000;
  std::string policy = "full", dir;
  double bucket_mb = 25;
  bool overlap = true, json = false;
  uint64_t seed = 1;
};


}  // namespace

int bench_train_dist(int argc, char** argv) {
  bool no_overlap = false;
  DistBenchOpts o;
  CLI::App app("Data-parallel training throughput (NCCL) over N GPUs of this host; the global "
               "batch is the same for every N (each GPU takes 1/N of its sequences).",
               "topk bench train --gpus");
  add_int(app, "--gpus", o.gpus, 1, 1024, "GPUs of this host (one process each)");
  add_int(app, "--steps", o.steps, 1, 1 << 24, "measured steps (default 10)");
  add_int(app, "--warmup", o.warmup, 0, 1 << 24, "unmeasured steps first (default 3)");
  add_int(app, "--S", o.S, 2, 1 << 24, "sequence length (default 4096)");
  add_int(app, "--batch-tokens", o.batch_tokens, 2, 1 << 26, "global tokens per step (default 32768)");
  add_model_shape(app, o, 2);  // defaults: the GPU engine's benchmark model
  add_text(app, "--policy", o.policy, "training attention (default full)");
  add_real(app, "--bucket-mb", o.bucket_mb, {0, 1 << 16, true}, "all-reduce bucket size in MiB "
           "(default 25)");
  app.add_flag("--no-overlap", no_overlap, "all-reduce after the backward instead of during it");
  add_text(app, "--dir", o.dir, "rendezvous folder (default: the temporary folder)");
  add_seed(app, "--seed", o.seed, "weights and data (default 1)");
  app.add_flag("--json", o.json, "one JSON object instead of the table");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  o.overlap = !no_overlap;
  TOPK_CHECK(dist_available(), "--gpus: this build has no multi-GPU training (built without the "
             "CUDA backend or without NCCL's header)");
  DistEnv env = dist_env();
  if (!env.from_env && o.gpus > 1) {
    // The ranks keep --gpus (it routes them here) and find RANK set, so they do not spawn.
    std::vector<std::string> args = {"bench", "train"};
    for (int i = 1; i < argc; i++) args.push_back(argv[i]);
    return dist_spawn(args, o.gpus);
  }
  const AttnPolicy pol = parse_policy(o.policy);
  const ModelConfig c = bench_model_config(o, o.S);
  if (o.dir.empty()) o.dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  Dist d = dist_open(env, o.dir);
  d.overlap = o.overlap;
  d.bucket_bytes = int64_t(o.bucket_mb * (1 << 20));
  Model m = model_create(c);
  model_init(m, o.seed);  // the same weights on every rank
  model_to(m, Device::cuda);
  AdamW opt = adamw_create(m);
  Buffer grad(DType::f32, {m.numel}, Device::cuda);
  Acts acts;
  const int nseq = std::max(1, o.batch_tokens / o.S);
  TOPK_CHECK(nseq >= d.world, "--batch-tokens %d holds %d sequences of %d tokens: fewer than the "
             "%d GPUs", o.batch_tokens, nseq, o.S, d.world);
  std::vector<double> times;
  double loss = 0;
  for (int step = 0; step < o.warmup + o.steps; step++) {
    Rng r(o.seed * 1000003u + uint64_t(step));
    std::vector<std::vector<int>> seqs(size_t(nseq), std::vector<int>(size_t(o.S)));
    for (auto& s : seqs)
      for (int& t : s) t = int(r.below(256));
    std::vector<Batch> micro = {make_batch(seqs)};
    const double count = loss_count(micro[0]);
    dist_sum(d, 0);  // every rank starts the step together
    device_synchronize();
    const double t0 = now_seconds();
    loss = shard_grad(m, micro, count, d.rank, d.world, pol, acts, grad, &d);
    clip_grad_norm(grad, 1.0f);
    adamw_step(opt, m, grad, 1e-4f, AdamWOpts{});
    device_synchronize();
    if (step >= o.warmup) times.push_back(now_seconds() - t0);
    loss = dist_sum(d, loss) / count;
  }
  if (d.rank != 0) return 0;
  const double t = median(times), tokens = double(nseq) * o.S;
  const double grad_mb = double(m.numel) * 4 / (1 << 20);
  if (o.json) {
    nlohmann::json j = {{"name", "train_step_dp"}, {"gpus", d.world}, {"S", o.S}, {"seqs", nseq},
                        {"tokens_per_step", tokens}, {"median_step_ms", 1e3 * t},
                        {"tokens_per_s", tokens / t}, {"tokens_per_s_per_gpu", tokens / t / d.world},
                        {"policy", policy_str(pol)}, {"overlap", o.overlap},
                        {"buckets", d.buckets.size()}, {"grad_mib", grad_mb},
                        {"params", model_param_count(m)}, {"loss_last", loss},
                        {"steps", o.steps}, {"warmup", o.warmup}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("topk bench train --gpus %d: L=%d d=%d Hq=%d Hkv=%d ffn=%d V=%d (%.1fM params), "
                "%s attention\n%d x %d tokens per step over %d GPU%s; %zu buckets over %.0f MiB of "
                "gradient, %s; median of %d steps after %d warm-up\n"
                "step %.1f ms, %.0f tokens/s (%.0f per GPU), last loss %.3f\n",
                d.world, c.layers, c.hidden, c.heads, c.kv_heads, c.inter, c.vocab,
                model_param_count(m) / 1e6, policy_str(pol).c_str(), nseq, o.S, d.world,
                d.world == 1 ? "" : "s", d.buckets.size(), grad_mb,
                o.overlap ? "overlapped with the backward" : "after the backward", o.steps,
                o.warmup, 1e3 * t, tokens / t, tokens / t / d.world, loss);
  }
  return 0;
}

}  // namespace topk::cli
