// Model configuration: the fields of a Hugging Face config.json for LlamaForCausalLM,
// Qwen2ForCausalLM and Qwen3ForCausalLM that the math needs, plus topk's byte tokenizer.
// Both rope forms are read: rope_theta + rope_scaling (transformers 4) and rope_parameters
// (transformers 5); both are written. Keys the model does not use are recorded, not errors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace topk {

enum class Arch { llama, qwen2, qwen3 };
const char* arch_name(Arch a);  // "LlamaForCausalLM", ...

struct RopeConfig {
  double theta = 10000.0;
  bool llama3 = false;  // rope_type "llama3"; otherwise "default"
  double factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_pos = 8192;
};

// The byte tokenizer: ids 0..255 are bytes, then BOS, EOS, PAD. Recorded in config.json as
// "topk_tokenizer": {"type": "bytes", "bos": 256, "eos": 257, "pad": 258}.
struct TokenizerConfig {
  bool present = false;  // false for a checkpoint that did not come from topk
  int bos = 256, eos = 257, pad = 258;
};

struct ModelConfig {
  Arch arch = Arch::llama;
  int hidden = 0;        // hidden_size
  int inter = 0;         // intermediate_size
  int layers = 0;        // num_hidden_layers
  int heads = 0;         // Hq
  int kv_heads = 0;      // Hkv
  int head_dim = 0;      // D
  int vocab = 0;         // V
  double rms_eps = 1e-6;
  RopeConfig rope;
  bool tie_embeddings = false;
  bool attention_bias = false;  // Llama/Qwen3: q,k,v,o biases. Qwen2 always has q,k,v biases.
  int max_pos = 2048;
  std::string dtype = "float32";  // storage dtype of the weights: float32 | bfloat16 | float16
  int bos = -1, eos = -1, pad = -1;  // -1: none
  std::vector<int> eos_ids;          // all eos ids when the file lists several
  TokenizerConfig tokenizer;
  // Lightning Indexer (DeepSeek-V3.2's names; all 0: the model has none). Per layer, HI query
  // heads of dim dI and one key per token; it selects index_topk keys per query (model/indexer.h).
  int index_n_heads = 0;        // HI
  int index_head_dim = 0;       // dI
  int index_topk = 0;           // keys selected per query under the `indexer` policy
  int index_rope_head_dim = 0;  // rotary dims of dI (topk's key; written as dI / 2 when absent)
  std::vector<std::string> ignored_keys;  // keys of config.json this model does not use

  bool qkv_bias() const { return attention_bias || arch == Arch::qwen2; }
  bool o_bias() const { return attention_bias && arch != Arch::qwen2; }
  bool qk_norm() const { return arch == Arch::qwen3; }
  bool has_indexer() const { return index_n_heads > 0; }
  int q_dim() const { return heads * head_dim; }
  int kv_dim() const { return kv_heads * head_dim; }
};

// Checks the sizes (each within generous limits, so that size products fit in 64 bits and
// q_dim/kv_dim in an int) and their relations; raises topk::Error naming the bad field.
void validate(const ModelConfig& c, const std::string& what = "config");
// Parameters of the model (64-bit; the config must be valid).
int64_t config_param_count(const ModelConfig& c);
// Parses the text of a config.json (`what` names it in errors) and validates it.
ModelConfig config_from_json_text(const std::string& text, const std::string& what);
std::string config_to_json_text(const ModelConfig& c);
ModelConfig load_config(const std::string& dir);             // dir/config.json
void save_config(const std::string& dir, const ModelConfig& c);  // atomic

}  // namespace topk
