// Lightning Indexer training in `topk train` (docs/engine.md, "Indexer training"): the run-file
// keys, the model with an indexer added, and the gradients of one step of each stage.
//
//   dense warm-up   the model frozen under full attention; per layer the indexer is fitted by
//                   KL(p_t || softmax(I(t, .))) over every visible key, p_t the attention summed
//                   over heads and L1-normalised; only the indexer's parameters update.
//   sparse stage    the model trains (LM loss) with each query attending to the indexer's
//                   index_topk keys; the indexer trains by the same KL over the keys it selected,
//                   on a detached input (its loss reaches only its parameters).
// The indexer's loss of a step is the mean over layers and query rows of the KL; its gradient
// is that mean's. Model and indexer gradients are clipped separately (two objectives).
#pragma once
#include <string>
#include <vector>

#include "core/json.h"
#include "model/forward.h"
#include "train/trainer.h"

namespace topk {

// The run-file keys this adds.
bool is_indexer_run_key(const std::string& key);
// Reads "indexer" and "indexer_stage" of run file j into c (after the rest of c is parsed):
// c.model gains the indexer when the run file has "model"; the stage's attention policies are
// checked, and default to `indexer` where the stage implies it. Raises with `what` in the message.
void indexer_run_keys(const json& j, TrainConfig& c, const std::string& what);

// The model the run starts from: cfg.init's folder, with cfg.indexer added when it has none
// (the indexer's parameters then start from model_init's draw with cfg.seed; the rest is the
// folder's). On the CPU.
Model indexer_init_model(const TrainConfig& cfg);

// One step's gradients of an indexer stage into grad (zeroed by the caller) over the micro-
// batches (count: the loss weight of the step): returns the LM loss summed over the masked
// tokens; *kl receives the indexer's mean KL.
double indexer_step(const Model& m, const TrainConfig& cfg, const std::vector<Batch>& micro,
                    double count, Acts& acts, const TensorView& grad, double* kl);

// Clips the model's and the indexer's gradients separately to cfg.clip; returns the norm of the
// whole gradient before clipping.
double indexer_clip(const Model& m, const TensorView& grad, float clip);

// The parameters an update of this stage changes: [*first, *last) of model.params.
void indexer_trainable(const Model& m, IndexerStage stage, size_t* first, size_t* last);

const char* indexer_stage_name(IndexerStage s);

}  // namespace topk
