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
  // Lightning Indexer (model/indexer.h), kNoParam without one: wq [HI dI, H], wk [dI, H],
  // k_norm weight and bias [dI], weights_proj [HI, H].
  size_t ix_q = kNoParam, ix_k = kNoParam, ix_norm = kNoParam, ix_norm_b = kNoParam,
         ix_w = kNoParam;
};

struct Model {
  ModelConfig cfg;
  std::vector<ParamInfo> params;
  std::vector<LayerParams> layer;  // [L]
  size_t embed = 0, final_norm = 0, lm_head = 0;  // lm_head == embed when tied
  int64_t numel = 0;  // parameters
  Buffer w;           // [numel] f32 master weights; empty for an inference-only CUDA model
  Buffer wc;          // [numel] bf16 weights that CUDA's matrix products read; empty on the CPU
                      // and for an f32-compute CUDA model
  Buffer inv_freq;    // [D/2] f32 RoPE inverse frequencies on the model's device
  // The indexer's parameters of every layer come last in the table and in w, [indexer_begin,
  // numel) (numel when there is none), so that they train, freeze and load as one range.
  size_t indexer_begin = 0;
  size_t indexer_first_param = 0;  // index into params of the first indexer parameter
  Buffer index_inv_freq;           // [dI/2] f32: the indexer's RoPE (0 past its rotary dims)
  Tokenizer tok;      // text <-> ids (model/tokenizer.h)
  std::string tokenizer_dir;  // the folder holding tokenizer.json (BPE), copied by model_save

  Device device() const { return w.view().empty() ? wc.view().device : w.view().device; }
  // The dtype of GEMM operands, activations and the KV cache: bf16 on CUDA (f32 accumulation),
  // f32 on the CPU and for a CUDA model moved with DType::f32 (no bf16 copy).
  DType compute() const { return wc.view().empty() ? DType::f32 : DType::bf16; }
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
// A weight matrix [rows, cols] as a GEMM operand, in the model's compute dtype.
TensorView matrix_view(const Model& m, size_t off, int64_t rows, int64_t cols);

// The parameter table for a config, all weights zero, on the CPU.
Model model_create(const ModelConfig& cfg);
// Matrices ~ N(0, std^2), norms 1, biases 0; the same seed gives the same weights (CPU model).
void model_init(Model& m, uint64_t seed, float std = 0.02f);
// dir/config.json + dir/model.safetensors, or the shards that model.safetensors.index.json
// names (F32, BF16 or F16 tensors; converted to fp32), and the folder's tokenizer. On the CPU.
Model model_load(const std::string& dir);
// indexer_optional: the indexer's tensors may be missing from the file (they keep m's values).
void model_load_weights(Model& m, const std::string& path, bool indexer_optional = false);
// The weights of a model folder (single file or shards) into m, whose config must match the
// folder's; with indexer_optional, m may have an indexer that the folder lacks (adding an
// indexer to a trained model), whose parameters then keep their values.
void model_load_into(Model& m, const std::string& dir, bool indexer_optional);
// The tokenizer of a model folder (tokenizer.json, else the byte tokenizer of its config).
void model_load_tokenizer(Model& m, const std::string& dir);
// Moves the model to a device. On CUDA the bf16 copy is made; keep_master = false drops the
// f32 master weights there (inference only: half the memory). Back to the CPU needs the master.
// compute = DType::f32 on CUDA makes no bf16 copy: every product and activation stays f32 (the
// CPU engine's numerics on the GPU, for checking; several times slower than bf16).
void model_to(Model& m, Device device, bool keep_master = true, DType compute = DType::bf16);
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
