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

void usage() {
  std::fprintf(stderr,
               "usage: topk bench train --gpus N [options]\n"
               "  Data-parallel training throughput (NCCL) over N GPUs of this host; the global\n"
               "  batch is the same for every N (each GPU takes 1/N of its sequences).\n"
               "  --steps N  --warmup N     measured and unmeasured steps (default 10, 3)\n"
               "  --S N                     sequence length (default 4096)\n"
               "  --batch-tokens N          global tokens per step (default 32768)\n"
               "  --layers N  --d-model N  --heads N  --kv-heads N  --ffn N  --vocab N\n"
               "                            model (default 12, 768, 12, 4, 2048, 32000: the GPU\n"
               "                            engine's benchmark model)\n"
               "  --policy P                training attention (default full)\n"
               "  --bucket-mb X             all-reduce bucket size (default 25)\n"
               "  --no-overlap              all-reduce after the backward instead of during it\n"
               "  --dir D                   rendezvous folder (default: the temporary folder)\n"
               "  --seed N  --json\n");
}

int num(const std::string& flag, const std::string& s, int lo) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  TOPK_CHECK(!s.empty() && *end == 0 && v >= lo && v <= (1 << 26), "%s expects a number >= %d, "
             "got '%s'", flag.c_str(), lo, s.c_str());
  return int(v);
}

ModelConfig model_config(const DistBenchOpts& o) {
  ModelConfig c;
  c.arch = Arch::llama;
  c.hidden = o.d_model, c.inter = o.ffn, c.layers = o.layers;
  c.heads = o.heads, c.kv_heads = o.kv_heads;
  TOPK_CHECK(o.d_model % o.heads == 0, "--d-model %d is not a multiple of --heads %d", o.d_model,
             o.heads);
  c.head_dim = o.d_model / o.heads;
  c.vocab = o.vocab;
  c.max_pos = o.S;
  validate(c, "bench model");
  return c;
}

}  // namespace

int bench_train_dist(int argc, char** argv) {
  DistBenchOpts o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      TOPK_CHECK(i + 1 < argc, "%s needs a value", a.c_str());
      return argv[++i];
    };
    if (a == "--gpus") o.gpus = num(a, next(), 1);
    else if (a == "--steps") o.steps = num(a, next(), 1);
    else if (a == "--warmup") o.warmup = num(a, next(), 0);
    else if (a == "--S") o.S = num(a, next(), 2);
    else if (a == "--batch-tokens") o.batch_tokens = num(a, next(), 2);
    else if (a == "--layers") o.layers = num(a, next(), 1);
    else if (a == "--d-model") o.d_model = num(a, next(), 1);
    else if (a == "--heads") o.heads = num(a, next(), 1);
    else if (a == "--kv-heads") o.kv_heads = num(a, next(), 1);
    else if (a == "--ffn") o.ffn = num(a, next(), 1);
    else if (a == "--vocab") o.vocab = num(a, next(), 2);
    else if (a == "--policy") o.policy = next();
    else if (a == "--bucket-mb") o.bucket_mb = std::atof(next().c_str());
    else if (a == "--no-overlap") o.overlap = false;
    else if (a == "--dir") o.dir = next();
    else if (a == "--seed") o.seed = uint64_t(num(a, next(), 0));
    else if (a == "--json") o.json = true;
    else if (a == "--help" || a == "-h") return usage(), 0;
    else return std::fprintf(stderr, "topk bench train --gpus: unknown option '%s'\n", a.c_str()), usage(), 2;
  }
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
  const ModelConfig c = model_config(o);
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
