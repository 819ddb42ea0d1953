// topk train --config run.json: trains a model on a built-in task (see docs/engine.md).
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/json.h"
#include "train/dist.h"
#include "train/trainer.h"

namespace topk::cli {

int train(int argc, char** argv) {
  CLI::App app("Trains on the run file's task; checkpoints go to OUT/checkpoint and a run resumes "
               "from there unless --no-resume. docs/engine.md describes RUN.json.", "topk train");
  std::string config, out, device = "auto";
  int stop_after = -1, gpus = -1;  // -1: no --gpus
  double stop_seconds = -1;
  bool no_resume = false;
  add_text(app, "--config", config, "the run file (JSON)")->type_name("RUN.json");
  add_text(app, "--out", out, "output folder (overrides the run file's \"out\")")->type_name("DIR");
  add_int(app, "--stop-after", stop_after, 1, INT32_MAX, "take at most N steps now (the schedule "
          "still spans the run file's steps), then checkpoint");
  add_real(app, "--stop-after-seconds", stop_seconds, Range{0, 1e9}, "stop at the first step "
           "that ends SEC seconds after training starts here, then checkpoint (a later run "
           "resumes)")->type_name("SEC");
  app.add_flag("--no-resume", no_resume, "train from scratch even when a checkpoint exists");
  add_device(app, device);
  add_int(app, "--gpus", gpus, 1, 1024, "data-parallel over N GPUs of this host (N processes, "
          "NCCL) with the same global batch as one GPU; under torchrun (RANK, WORLD_SIZE, "
          "LOCAL_RANK set) leave it out: each process is one rank")->type_name("N");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  if (config.empty()) {
    std::fprintf(stderr, "topk train: error: --config RUN.json is required (see topk train --help)\n");
    return 2;
  }
  TrainConfig cfg = train_config_from_json_text(read_file(config), config);
  if (!out.empty()) cfg.out = out;
  if (no_resume) cfg.resume = false;
  cfg.stop_seconds = stop_seconds;
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
