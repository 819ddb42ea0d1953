// Training checkpoints: one folder holding config.json, model.safetensors (the config's dtype,
// loadable by Hugging Face transformers), optimizer.safetensors (fp32 master weights and the
// AdamW moments) and trainer_state.json. The folder is written under a temporary name and
// renamed into place, so a crash leaves the previous checkpoint whole.
#pragma once
#include <string>

#include "core/json.h"
#include "model/model.h"
#include "train/optim.h"

namespace topk {

// Works from any device (the tensors are staged through the host).
void save_checkpoint(const std::string& dir, const Model& m, const AdamW& opt, const json& state);
// True when dir (or a leftover dir.old from an interrupted swap) holds a checkpoint; sets *found.
bool find_checkpoint(const std::string& dir, std::string* found);
// Loads a checkpoint written by save_checkpoint: model (fp32 master weights), optimizer, state,
// placed on `device`. Works from any device.
void load_checkpoint(const std::string& dir, Model& m, AdamW& opt, json& state,
                     Device device = Device::cpu);

void remove_tree(const std::string& path);  // rm -r; missing is fine

}  // namespace topk
