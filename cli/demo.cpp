// topk demo: evaluates the shipped long-context model (models/demo, trained on the GPU by
// examples/demo-4k-stage1.json, then examples/demo-4k.json) when it is there; otherwise trains
// a small byte-level model on a retrieval task (or reuses the one a previous run left in DIR).
// Then compares full attention with top-k decoding at several rho, an oracle selector at several
// precisions and a sliding window (docs/eval.md shows the output). One full prefill per example
// serves every policy.
#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

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

// The shipped model's sweep (finding 1 at 4K context): tasks it was trained on, one length.
const char* kShippedDir = "models/demo";
const std::vector<std::string> kShippedTasks = {"niah_multikey_2", "passkey"};
const int64_t kShippedLength = 4096;
const int kShippedSamples = 40;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> r;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) r.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return r;
}

// Evaluates a model folder (the shipped long-context model): full prefill once per example,
// shared by every policy.
int demo_shipped(const std::string& model, const std::string& dir, int samples,
                 std::vector<std::string> tasks, std::vector<int64_t> lengths) {
  const double t0 = now_seconds();
  Model m = model_load(model);
  eval::EvalOpts o;
  o.tasks = tasks.empty() ? kShippedTasks : tasks;
  o.lengths = lengths.empty() ? std::vector<int64_t>{kShippedLength} : lengths;
  o.samples = samples > 0 ? samples : kShippedSamples;
  o.seed = 1000000;  // far from the training examples' seeds
  o.progress = true;
  o.policies = {"full", "topk:ratio=0.25", "topk:ratio=0.1", "topk:ratio=0.05",
                "topk:ratio=0.02", "topk:ratio=0.01", "topk:ratio=0.005", "topk:k=64",
                "oracle:k=64,precision=1", "oracle:k=64,precision=0.75",
                "oracle:k=64,precision=0.5", "oracle:k=64,precision=0.25",
                "window:w=56,sink=8"};
  std::printf("evaluating the shipped model %s (%d layers, d=%d, %d heads)\n", model.c_str(),
              m.cfg.layers, m.cfg.hidden, m.cfg.heads);
  std::fflush(stdout);
  eval::Report r = eval::run(m, o);
  r.model = model;
  std::printf("\n%d held-out examples per task and length; one full-attention prefill per example "
              "shared by the policies, greedy decode\n", o.samples);
  std::fputs(eval::format_table(r).c_str(), stdout);
  const std::string out = dir + "/eval";
  make_dirs(out);
  for (const auto& n : eval::write_outputs(r, out)) std::printf("%s\n", n.c_str());
  std::printf("demo: evaluation %.0f s\n", now_seconds() - t0);
  return 0;
}

}  // namespace

int demo(int argc, char** argv) {
  CLI::App app(std::string("With a shipped model (--model DIR, default ") + kShippedDir +
               " when it holds config.json): evaluates it at 4096 tokens. Otherwise (or with "
               "--train): trains a small model on the " + kDemoTask + " task (cached in "
               "DIR/checkpoint; an interrupted training resumes). Then evaluates full attention, "
               "top-k decoding at several rho, the oracle selector and a sliding window; writes "
               "DIR/eval/*.", "topk demo");
  std::string dir = "build/demo";
  int samples = 0;  // 0: the mode's default
  bool retrain = false, train = false;
  std::string model = std::filesystem::exists(std::string(kShippedDir) + "/config.json")
                          ? kShippedDir : "";
  std::string task_list;
  std::vector<int64_t> lengths;
  add_text(app, "--dir", dir, "where the model and the results go (default build/demo)");
  add_int(app, "--samples", samples, 1, 1000000, "held-out examples per policy (default 200; 40 "
          "for the shipped model)");
  app.add_flag("--retrain", retrain, "train the small model again");
  app.add_flag("--train", train, "the small model even when a shipped model is present");
  add_text(app, "--model", model, std::string("a model folder to evaluate (default ") +
           kShippedDir + " when it holds config.json)")->type_name("DIR");
  add_text(app, "--tasks", task_list, "the shipped model's tasks, comma separated (default " +
           kShippedTasks[0] + "," + kShippedTasks[1] + ")")->type_name("T1,T2");
  add_int_list(app, "--lengths", lengths, 1, 1 << 24, "the shipped model's context lengths "
               "(default 4096)");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  const std::vector<std::string> tasks = split_list(task_list);
  if (!model.empty() && !train && !retrain) {
    TOPK_CHECK(std::filesystem::exists(model + "/config.json"), "--model %s: no config.json there",
               model.c_str());
    return demo_shipped(model, dir, samples, tasks, lengths);
  }
  if (!model.empty())
    std::printf("the small demo model (--train), not the shipped %s\n", model.c_str());
  else
    std::printf("no shipped model in %s (examples/demo-4k-stage1.json and demo-4k.json train it "
                "on a GPU); the small %s model instead\n", kShippedDir, kDemoTask);
  if (samples <= 0) samples = 200;
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
    // One thread: this model's GEMMs (d = 64, 512 tokens a step) are too small to split, and on
    // a busy 2-core machine two threads spent their time waiting on each other: 1.1k tokens/s
    // against 29k on one (measured). Evaluation below keeps every core (one example each).
    const int omp = omp_get_max_threads(), blas = openblas_get_num_threads();
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
    train_run(cfg);
    omp_set_num_threads(omp);
    openblas_set_num_threads(blas);
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
