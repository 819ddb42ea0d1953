// Accuracy sweeps over tasks x lengths x attention policies (topk eval; docs/eval.md).
//
// Protocol: each example of tasks::generate is encoded with the model's byte tokenizer; all
// prompt tokens but the last are prefilled with full attention (or with the policy itself when
// EvalOpts::policy_prefill), then the last prompt token and every generated token run as
// decode steps under the policy, greedily, until EOS or the example's answer budget. Examples
// run in batches on the model's device; one full prefill serves every policy of a batch. The
// prediction is scored with the task's RULER scorer (0..100). At every decode step each
// layer's attention statistics (model/attend.h) are recorded and averaged.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/policy.h"

namespace topk::eval {

struct EvalOpts {
  std::vector<std::string> tasks;     // names of tasks::task_list()
  std::vector<int64_t> lengths;       // target tokens per example
  int samples = 10;                   // examples per task and length; example i has seed seed+i
  uint64_t seed = 0;
  std::string mode = "standard";      // task mode (tasks::parse_mode): standard, ruler, helmet, compact
  std::vector<std::string> policies;  // policy strings (model/policy.h)
  bool policy_prefill = false;        // prefill with the policy instead of full attention
  bool per_head = false;              // keep per-head statistics
  bool progress = false;              // progress line on stderr
  int batch = 0;                      // examples decoded together; 0: 16 on CUDA, 1 on the CPU
  bool indexer_fp8 = false;           // the KV cache holds the indexer's keys as FP8 E4M3
};

// Means over decode steps (and examples) of one layer's statistics; per head when asked.
struct LayerStats {
  double precision = 0, mass = 0, entropy = 0, entropy_norm = 0;  // means over heads
  std::vector<double> head_precision, head_mass, head_entropy, head_entropy_norm;  // [Hq]
};

// One (task, length, policy) cell.
struct Cell {
  std::string task, policy;
  int64_t length = 0;
  int examples = 0;
  double score = 0;          // mean task score, 0..100
  double rho = 0;            // mean over decode steps of W / n (1 for full attention)
  double precision = 0;      // means over layers of the layer statistics (NaN for full)
  double mass = 0, entropy = 0, entropy_norm = 0;
  int64_t decode_steps = 0;  // steps the statistics average over
  int64_t context = 0;       // mean prompt tokens
  double seconds = 0;        // wall time of the (task, length) sweep, shared equally by its policies
  std::vector<LayerStats> layers;  // [L]
  std::vector<std::string> predictions;  // [examples]
};

struct Report {
  EvalOpts opts;
  std::string model;  // folder or description
  int layers = 0, heads = 0;
  std::vector<Cell> cells;  // task-major, then length, then policy (the order of opts)
  double seconds = 0;
};

// Examples decoded together for these options on the model's device.
int batch_size(const EvalOpts& o, const Model& m);

// Checks the options (known tasks and modes, positive lengths, parseable policies; run() checks
// that each length fits its task in the model's tokens); raises
// topk::Error naming the bad value.
void validate(const EvalOpts& o);

Report run(const Model& m, const EvalOpts& o);

// Writes DIR/results.json, DIR/results.csv, DIR/layers.csv (each atomically) and the plots
// (plot.h). Returns notes to print (plots skipped, files written).
std::vector<std::string> write_outputs(const Report& r, const std::string& dir);
// The table printed on stdout.
std::string format_table(const Report& r);

}  // namespace topk::eval
