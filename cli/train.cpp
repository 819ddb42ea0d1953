// topk train --config run.json: trains a model on a built-in task (see docs/engine.md).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "core/json.h"
#include "train/dist.h"
#include "train/trainer.h"

namespace topk::cli {

static void train_usage() {
  std::fprintf(stderr,
               "usage: topk train --config RUN.json [--out DIR] [--stop-after N] [--no-resume]\n"
               "                  [--device cpu|cuda|auto] [--gpus N]\n"
               "  trains on the run file's task; checkpoints go to OUT/checkpoint and a run\n"
               "  resumes from there unless --no-resume. --stop-after N takes at most N steps now\n"
               "  (the schedule still spans the run file's steps), then checkpoints.\n"
               "  --device: where to train (default auto: cuda when a GPU is present).\n"
               "  --gpus N: data-parallel over N GPUs of this host (N processes, NCCL), with the\n"
               "  same global batch as one GPU; under torchrun (RANK, WORLD_SIZE, LOCAL_RANK\n"
               "  set) leave it out: each process is one rank.\n"
               "  docs/engine.md describes RUN.json.\n");
}

int train(int argc, char** argv) {
  std::string config, out, device = "auto";
  int stop_after = -1, gpus = -1;  // -1: no --gpus
  bool no_resume = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      TOPK_CHECK(i + 1 < argc, "%s needs a value", a.c_str());
      return argv[++i];
    };
    if (a == "--config") config = next();
    else if (a == "--out") out = next();
    else if (a == "--stop-after") stop_after = std::atoi(next().c_str());
    else if (a == "--no-resume") no_resume = true;
    else if (a == "--device") device = next();
    else if (a == "--gpus") {
      gpus = std::atoi(next().c_str());
      TOPK_CHECK(gpus >= 1, "--gpus needs N >= 1");
    }
    else if (a == "--help" || a == "-h") return train_usage(), 0;
    else return std::fprintf(stderr, "topk train: unknown option '%s'\n", a.c_str()), train_usage(), 2;
  }
  if (config.empty()) return train_usage(), 2;
  TrainConfig cfg = train_config_from_json_text(read_file(config), config);
  if (!out.empty()) cfg.out = out;
  if (no_resume) cfg.resume = false;
  cfg.device = parse_device(device);
  if (!cfg.log_every) cfg.log_every = 10;
  DistEnv env = dist_env();
  const bool distributed = gpus >= 1 || env.from_env;
  if (distributed) {
    TOPK_CHECK(dist_available(), "multi-GPU training: this build has none (built without the "
               "CUDA backend or without NCCL's header)");
    TOPK_CHECK(cfg.device == Device::cuda, "training on several GPUs needs --device cuda (or "
               "auto with a GPU present)");
  }
  if (gpus > 1) {  // this process only starts the ranks, each a `topk train` of its own
    std::vector<std::string> args = {"train"};
    for (const std::string& s : args_without(argc, argv, "--gpus")) args.push_back(s);
    return dist_spawn(args, gpus);
  }
  Dist dist;
  if (distributed) dist = dist_open(env, cfg.out);
  TrainResult r;
  try {
    r = train_run(cfg, stop_after, nullptr, distributed ? &dist : nullptr);
  } catch (const Error& e) {
    if (dist.world > 1) throw Error("rank " + std::to_string(dist.rank) + ": " + e.what());
    throw;
  }
  if (dist.rank != 0) return 0;
  std::printf("trained steps %lld..%lld; checkpoint: %s\n", (long long)r.start_step,
              (long long)r.end_step, r.checkpoint.c_str());
  return 0;
}

}  // namespace topk::cli
