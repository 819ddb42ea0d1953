// The training loop: data -> forward -> loss -> backward -> clip -> AdamW, with gradient
// accumulation, a warm-up + cosine schedule, checkpoints and exact resume. Configured by a JSON
// run file (see docs/engine.md):
//   {"out": "runs/copy", "model": {config.json fields} | "init": "DIR",
//    "task": {"name": "copy", "min_len": 4, "max_len": 12, "alphabet": 8},
//    "attention": "full", "steps": 300, "batch_tokens": 512, "grad_accum": 1,
//    "lr": 3e-3, "min_lr": 3e-4, "warmup": 20, "weight_decay": 0.0, "clip": 1.0,
//    "seed": 1, "checkpoint_every": 100, "log_every": 10, "resume": true,
//    "eval_examples": 200, "eval_attention": "topk:k=4"}
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/policy.h"
#include "train/data.h"
#include "train/optim.h"

namespace topk {

// Lightning Indexer training (train/indexer_train.h): dense warm-up (the model frozen, the
// indexer fitted to full attention) or sparse stage (the model trains under the indexer's
// selection, the indexer by KL over the keys it selected).
enum class IndexerStage { none, dense, sparse };

// The run file's "indexer": an indexer to add to the model (a new one, or the "init" folder's
// when it has none). Zero heads: none asked.
struct IndexerSpec {
  int heads = 0, head_dim = 0, topk = 0;  // index_n_heads, index_head_dim, index_topk
  int rope_dim = -1;                      // index_rope_head_dim; -1: head_dim / 2
};

struct TrainConfig {
  std::string out;          // checkpoints go to out/checkpoint
  std::string init;         // start from this model folder; else a new model from `model`
  ModelConfig model;
  float init_std = 0.02f;
  TaskOpts task;
  AttnPolicy attention;     // used in the training forward
  int steps = 100, batch_tokens = 512, grad_accum = 1;
  Schedule sched;           // sched.total = steps
  AdamWOpts adam;
  float clip = 1.0f;
  uint64_t seed = 0;
  int checkpoint_every = 0;  // 0: only at the end
  int log_every = 10;        // 0: silent
  bool resume = true;        // continue from out/checkpoint when it exists
  int eval_examples = 0;     // > 0: report held-out exact-match accuracy at the end
  AttnPolicy eval_attention; // decode policy of that evaluation (prefill is full)
  std::string source;        // the run file's JSON, kept in each checkpoint's trainer_state.json
  Device device = Device::cpu;  // where the model trains (the CLI's --device)
  // The CLI's --stop-after-seconds: when >= 0, the first step that ends this many seconds after
  // training started here is the last one now (a checkpoint follows, as for stop_after), so that
  // a run split over time-limited sessions loses no step. All ranks stop at the same step.
  double stop_seconds = -1;
  bool recompute = false;    // recompute activations in the backward (less memory, more time)
  IndexerSpec indexer;       // "indexer": add an indexer to the model
  IndexerStage indexer_stage = IndexerStage::none;  // "indexer_stage": dense | sparse
};

// Parses a run file's text; unknown keys are errors (a typo must not silently do nothing).
TrainConfig train_config_from_json_text(const std::string& text, const std::string& what);

struct TrainResult {
  int64_t start_step = 0, end_step = 0;
  std::vector<double> losses;  // mean masked loss of each step run here
  std::vector<double> indexer_losses;  // indexer stages: mean KL per query row and layer, per step
  std::string checkpoint;      // folder of the last checkpoint written
  double accuracy = -1;        // held-out exact match (eval_examples > 0), else -1
};

struct Dist;  // train/dist.h

// Runs steps until cfg.steps (or until stop_after steps were taken here, when >= 0, or until
// cfg.stop_seconds have passed, writing a checkpoint there as if interrupted). Returns the
// final model (on cfg.device) in *model when given. A non-finite loss or gradient stops training with an error; the checkpoint on disk is
// then the last good one. dist (train/dist.h): this process is one rank of a data-parallel run;
// it takes its shard of each global batch, and only rank 0 logs, checkpoints and evaluates.
TrainResult train_run(const TrainConfig& cfg, int stop_after = -1, Model* model = nullptr,
                      Dist* dist = nullptr);

}  // namespace topk
