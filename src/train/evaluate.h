// Task accuracy: greedy decoding of held-out examples, exact match of the whole answer.
// The prompt (up to the answer) is prefilled with one attention policy, the answer decoded
// with another, as in top-k decoding.
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

// Examples come from Rng(seed) (use a seed the training data never uses).
EvalResult task_accuracy(const Model& m, const TaskOpts& task, int examples, uint64_t seed,
                         const AttnPolicy& prefill, const AttnPolicy& decode);

}  // namespace topk
