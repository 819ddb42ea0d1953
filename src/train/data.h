// Built-in training data: small synthetic tasks over the byte tokenizer, packed into batches.
//  copy:   BOS a b c ... | a b c ... EOS         (the loss counts from the '|' on)
//  recall: BOS k1=v1 k2=v2 ... ?kq: vq EOS       (associative recall; the loss counts the answer)
//  any task of src/tasks (passkey, mqar, niah_single, ...): BOS prompt answer_prefix target EOS
//          at `length` tokens (the loss counts the target and EOS)
//  mix:    a weighted mixture of the above: each example draws one task by weight
// Examples are a pure function of (seed, step, micro-batch), so a resumed run sees the same data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/tokenizer.h"

namespace topk {

struct TaskOpts {
  std::string name = "copy";  // copy | recall | a task of tasks::task_list()
  int min_len = 4, max_len = 12;  // copy: string length; recall: number of pairs
  int alphabet = 8;               // symbols 'a', 'b', ... (recall values use digits '0'..)
  int length = 0;                 // tasks of src/tasks: target tokens per example
  int min_length = 0;             // > 0: each example's length is uniform in [min_length, length]
  std::string mode = "standard";  // tasks of src/tasks: standard, ruler, helmet or compact
                                  // (docs/tasks.md)
  std::string loss = "answer";    // tasks of src/tasks: the loss counts the answer, every
                                  // token after the context ("question"), or every token ("all")
  // name "mix": each example draws mix[i] with probability weights[i] / sum(weights) (one draw
  // from the example's random stream), then is made as mix[i] makes it. Items are not mixes.
  std::vector<TaskOpts> mix;
  std::vector<double> weights;
};

struct Example {
  std::vector<int> tokens;
  int loss_from = 0;  // first position whose next-token target counts
  int answer_from = 0;  // first answer token (what a model must generate)
  int task = -1;        // mix: the index of the item it was drawn from; else -1
};

// Suite tasks take any tokenizer with text (lengths are counted in its tokens); copy and recall
// are defined over bytes and need the byte tokenizer.
Example make_example(const TaskOpts& t, const Tokenizer& tok, Rng& rng);
// The item of a mix an example draws (one uniform() from rng); items of weight 0 never.
size_t pick_mix_item(const TaskOpts& t, Rng& rng);
// Packs whole examples until adding one more would pass `tokens` (at least one example).
Batch make_task_batch(const TaskOpts& t, const Tokenizer& tok, uint64_t seed, int64_t step,
                      int micro, int tokens);

// Checks a task's options (and limits that keep one example finite: copy/recall max_len <= 4096,
// task length <= 2^20 tokens); raises topk::Error naming the field.
void validate_task(const TaskOpts& t);
// Makes one example of each suite task (each item of a mix) at nine lengths over the range its
// options draw, ends included, in tok's tokens: a task that cannot fill a length it will be
// asked for fails here, before training, and not at the first batch that draws it.
void check_task_lengths(const TaskOpts& t, const Tokenizer& tok);
// The run file's "task" object: known keys only, strict integers (docs/engine.md).
TaskOpts task_from_json(const json& j, const std::string& what);

}  // namespace topk
