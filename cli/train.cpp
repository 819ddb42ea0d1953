// topk train --config run.json: trains a model on a built-in task (see docs/engine.md).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "core/json.h"
#include "train/trainer.h"

namespace topk::cli {

static void train_usage() {
  std::fprintf(stderr,
               "usage: topk train --config RUN.json [--out DIR] [--stop-after N] [--no-resume]\n"
               "                  [--device cpu|cuda|auto]\n"
               "  trains on the run file's task; checkpoints go to OUT/checkpoint and a run\n"
               "  resumes from there unless --no-resume. --stop-after N takes at most N steps now\n"
               "  (the schedule still spans the run file's steps), then checkpoints.\n"
               "  --device: where to train (default auto: cuda when a GPU is present).\n"
               "  docs/engine.md describes RUN.json.\n");
}

int train(int argc, char** argv) {
  std::string config, out, device = "auto";
  int stop_after = -1;
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
    else if (a == "--help" || a == "-h") return train_usage(), 0;
    else return std::fprintf(stderr, "topk train: unknown option '%s'\n", a.c_str()), train_usage(), 2;
  }
  if (config.empty()) return train_usage(), 2;
  TrainConfig cfg = train_config_from_json_text(read_file(config), config);
  if (!out.empty()) cfg.out = out;
  if (no_resume) cfg.resume = false;
  cfg.device = parse_device(device);
  if (!cfg.log_every) cfg.log_every = 10;
  TrainResult r = train_run(cfg, stop_after);
  std::printf("trained steps %lld..%lld; checkpoint: %s\n", (long long)r.start_step,
              (long long)r.end_step, r.checkpoint.c_str());
  return 0;
}

}  // namespace topk::cli
