// Task accuracy: greedy decoding of held-out examples, exact match of the whole answer, under
// the evaluation protocol of docs/eval.md: every prompt token but the last is prefilled with
// one attention policy; the last prompt token and each answer token are decoded with another,
// as in top-k decoding. Examples run in batches on the model's device.
#pragma once
#include <cstdint>

#include "model/model.h"
#include "model/policy.h"
#include "train/data.h"

namespace topk {

struct EvalResult {
  int examples = 0, exact = 0;
  double accuracy() const { return examples ? double(exact) / examples : 0.0; }
};

// Examples come from Rng(seed) (use a seed the training data never uses); `batch` of them are
// decoded together.
EvalResult task_accuracy(const Model& m, const TaskOpts& task, int examples, uint64_t seed,
                         const AttnPolicy& prefill, const AttnPolicy& decode, int batch = 32);

}  // namespace topk
