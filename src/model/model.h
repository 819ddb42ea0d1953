// The transformer's parameters: every weight lives in one flat fp32 array (so the optimizer,
// gradients and checkpoints see one vector), described by a table of Hugging Face names.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace topk {

constexpr size_t kNoParam = size_t(-1);

struct ParamInfo {
  std::string name;            // Hugging Face tensor name
  std::vector<int64_t> shape;  // [out, in] for projections
  size_t offset = 0;           // into Model::w
  int64_t numel = 0;
  bool decay = false;          // weight decay applies (matrices, not norms or biases)
};

struct LayerParams {  // offsets into Model::w; kNoParam when the architecture has none
  size_t in_norm, q, k, v, o, q_b, k_b, v_b, o_b, q_norm, k_norm, post_norm, gate, up, down;
};

struct Model {
  ModelConfig cfg;
  std::vector<ParamInfo> params;
  std::vector<LayerParams> layer;  // [L]
  size_t embed = 0, final_norm = 0, lm_head = 0;  // lm_head == embed when tied
  std::vector<float> w;  // all parameters, fp32

  const float* at(size_t off) const { return off == kNoParam ? nullptr : w.data() + off; }
  float* at(size_t off) { return off == kNoParam ? nullptr : w.data() + off; }
};

// The parameter table for a config, all weights zero.
Model model_create(const ModelConfig& cfg);
// Matrices ~ N(0, std^2), norms 1, biases 0; the same seed gives the same weights.
void model_init(Model& m, uint64_t seed, float std = 0.02f);
// dir/config.json + dir/model.safetensors, or the shards that model.safetensors.index.json
// names (F32, BF16 or F16 tensors; converted to fp32).
Model model_load(const std::string& dir);
void model_load_weights(Model& m, const std::string& path);
// Writes dir/config.json and dir/model.safetensors (dtype from cfg.dtype), each atomically.
// The folder is created when missing.
void model_save(const std::string& dir, const Model& m);
int64_t model_param_count(const Model& m);

void make_dirs(const std::string& dir);  // mkdir -p; raises with the path

}  // namespace topk
