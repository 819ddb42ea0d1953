// The transformer's parameters: every weight lives in one flat fp32 buffer (so the optimizer,
// gradients and checkpoints see one vector), described by a table of Hugging Face names. The
// buffer sits on the model's device; on CUDA a bf16 copy of it feeds the matrix products.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tokenizer.h"
#include "topk/core.h"

namespace topk {

constexpr size_t kNoParam = size_t(-1);

struct ParamInfo {
  std::string name;            // Hugging Face tensor name
  std::vector<int64_t> shape;  // [out, in] for projections
  size_t offset = 0;           // into Model::w
  int64_t numel = 0;
  bool decay = false;          // weight decay applies (matrices, not norms or biases)
};

// Offsets into Model::w; kNoParam when the architecture has none. q, k, v are adjacent, as are
// their biases and gate, up (one [2I, H] matrix for the gate-and-up product).
struct LayerParams {
  size_t in_norm, q, k, v, o, q_b, k_b, v_b, o_b, q_norm, k_norm, post_norm, gate, up, down;
};

struct Model {
  ModelConfig cfg;
  std::vector<ParamInfo> params;
  std::vector<LayerParams> layer;  // [L]
  size_t embed = 0, final_norm = 0, lm_head = 0;  // lm_head == embed when tied
  int64_t numel = 0;  // parameters
  Buffer w;           // [numel] f32 master weights; empty for an inference-only CUDA model
  Buffer wc;          // [numel] bf16 weights that CUDA's matrix products read; empty on the CPU
  Buffer inv_freq;    // [D/2] f32 RoPE inverse frequencies on the model's device
  Tokenizer tok;      // text <-> ids (model/tokenizer.h)
  std::string tokenizer_dir;  // the folder holding tokenizer.json (BPE), copied by model_save

  Device device() const { return w.view().empty() ? wc.view().device : w.view().device; }
  // Host pointers to the master weights (the model must be on the CPU).
  float* host();
  const float* host() const;
  const float* at(size_t off) const { return off == kNoParam ? nullptr : host() + off; }
  float* at(size_t off) { return off == kNoParam ? nullptr : host() + off; }
};

// A parameter's slice of any flat [numel] tensor laid out like the weights (the weights, their
// gradient, the optimizer's moments) as a tensor of `shape`. Empty view for kNoParam.
TensorView param_at(const TensorView& flat, size_t off, std::initializer_list<int64_t> shape);
// A parameter as a tensor of `shape`: the f32 master weights, or the bf16 copy when the model
// keeps no master. Empty view for kNoParam.
TensorView param_view(const Model& m, size_t off, std::initializer_list<int64_t> shape);
// A weight matrix [rows, cols] as a GEMM operand: bf16 copy on CUDA, master f32 on the CPU.
TensorView matrix_view(const Model& m, size_t off, int64_t rows, int64_t cols);

// The parameter table for a config, all weights zero, on the CPU.
Model model_create(const ModelConfig& cfg);
// Matrices ~ N(0, std^2), norms 1, biases 0; the same seed gives the same weights (CPU model).
void model_init(Model& m, uint64_t seed, float std = 0.02f);
// dir/config.json + dir/model.safetensors, or the shards that model.safetensors.index.json
// names (F32, BF16 or F16 tensors; converted to fp32), and the folder's tokenizer. On the CPU.
Model model_load(const std::string& dir);
void model_load_weights(Model& m, const std::string& path);
// The tokenizer of a model folder (tokenizer.json, else the byte tokenizer of its config).
void model_load_tokenizer(Model& m, const std::string& dir);
// Moves the model to a device. On CUDA the bf16 copy is made; keep_master = false drops the
// f32 master weights there (inference only: half the memory). Back to the CPU needs the master.
void model_to(Model& m, Device device, bool keep_master = true);
// Refreshes the bf16 copy from the master weights (after they changed outside the optimizer).
void model_sync_compute(Model& m);
// The f32 weights on the host (a copy when the model lives on CUDA; from the bf16 copy when
// there is no master).
std::vector<float> model_host_weights(const Model& m);
// Writes dir/config.json and dir/model.safetensors (dtype from cfg.dtype), each atomically, and
// the tokenizer files of a BPE model. The folder is created when missing. Works from any device.
void model_save(const std::string& dir, const Model& m);
int64_t model_param_count(const Model& m);
// Bytes of the weights the forward reads per token (the bf16 copy on CUDA, f32 on the CPU).
int64_t model_weight_bytes(const Model& m);

// The device named on the command line: "cpu", "cuda", or "auto" (cuda when a GPU is present).
Device parse_device(const std::string& s);
const char* device_name(Device d);

void make_dirs(const std::string& dir);  // mkdir -p; raises with the path

}  // namespace topk
