// topk demo: trains a small byte-level model on a retrieval task (or reuses the one a previous
// run left in DIR), then compares full attention with top-k decoding at several rho, an
// oracle selector at several precisions and a sliding window (docs/eval.md shows the output).
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/json.h"
#include "core/timer.h"
#include "eval/eval.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace topk::cli {

namespace {

// The demo model and its training run: tuned to learn the task in about three minutes on two
// CPU cores.
const char* kDemoRun = R"({
  "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
            "max_position_embeddings": 512},
  "task": {"name": "ar", "length": 64, "min_length": 40, "loss": "question"},
  "attention": "full", "steps": 8000, "batch_tokens": 512, "lr": 0.003, "min_lr": 0.0003,
  "warmup": 30, "seed": 1, "log_every": 250, "checkpoint_every": 1000
})";

const char* kDemoTask = "ar";
const int64_t kDemoLength = 64;

}  // namespace

int demo(int argc, char** argv) {
  CLI::App app(std::string("Trains a small model on the ") + kDemoTask + " task (cached in "
               "DIR/checkpoint; an interrupted training resumes), then evaluates full attention, "
               "top-k decoding at several rho, the oracle selector and a sliding window; writes "
               "DIR/eval/*.", "topk demo");
  std::string dir = "build/demo";
  int samples = 200;
  bool retrain = false;
  add_text(app, "--dir", dir, "where the model and the results go (default build/demo)");
  add_int(app, "--samples", samples, 1, 1000000, "held-out examples per policy (default 200)");
  app.add_flag("--retrain", retrain, "train the model again");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  const double t0 = now_seconds();
  json run = json::parse(kDemoRun);
  run["out"] = dir;
  TrainConfig cfg = train_config_from_json_text(run.dump(), "demo run");
  const std::string ck = dir + "/checkpoint";
  std::string found;
  bool trained = false;
  if (!retrain && find_checkpoint(ck, &found)) {
    json st = read_json_file(found + "/trainer_state.json");
    json was = st.value("run", json::object());
    was.erase("out");
    json now = run;
    now.erase("out");
    if (was != now) {  // left by another version of the demo: train this one afresh
      std::printf("the model in %s comes from another demo run file; retraining\n", ck.c_str());
      retrain = true;
    } else {
      trained = st.value("step", int64_t(0)) >= cfg.steps;
    }
  }
  if (retrain) {
    remove_tree(ck);
    remove_tree(ck + ".old");
  }
  if (!trained) {
    std::printf("training a %d-layer, d=%d model on %s (examples of %d-%d tokens) for %d steps; "
                "checkpoint in %s\n", cfg.model.layers, cfg.model.hidden, kDemoTask,
                cfg.task.min_length, cfg.task.length, cfg.steps, ck.c_str());
    std::fflush(stdout);
    train_run(cfg);
  } else {
    std::printf("reusing the trained model in %s (topk demo --retrain trains it again)\n",
                ck.c_str());
  }
  const double t1 = now_seconds();
  Model m = model_load(ck);
  eval::EvalOpts o;
  o.tasks = {kDemoTask};
  o.lengths = {kDemoLength};
  o.samples = samples;
  o.seed = 1000000;  // far from the training examples' seeds
  o.progress = true;
  o.policies = {"full", "topk:ratio=0.5", "topk:ratio=0.25", "topk:ratio=0.1", "topk:ratio=0.05",
                "topk:ratio=0.02", "topk:k=8", "oracle:k=8,precision=1", "oracle:k=8,precision=0.75",
                "oracle:k=8,precision=0.5", "oracle:k=8,precision=0.25", "oracle:k=8,precision=0",
                "window:w=6,sink=2"};
  eval::Report r = eval::run(m, o);
  r.model = ck;
  std::printf("\n%s: %d held-out examples of %lld tokens; full-attention prefill, greedy decode\n",
              kDemoTask, samples, (long long)kDemoLength);
  std::fputs(eval::format_table(r).c_str(), stdout);
  const std::string out = dir + "/eval";
  make_dirs(out);
  for (const auto& n : eval::write_outputs(r, out)) std::printf("%s\n", n.c_str());
  std::printf("demo: training %.0f s, evaluation %.0f s\n", t1 - t0, now_seconds() - t1);
  return 0;
}

}  // namespace topk::cli
