#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "core/check.h"
#include "core/json.h"
#include "topk/core.h"

namespace topk {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::llama: return "LlamaForCausalLM";
    case Arch::qwen2: return "Qwen2ForCausalLM";
    case Arch::qwen3: return "Qwen3ForCausalLM";
  }
  return "?";
}
static const char* model_type(Arch a) {
  return a == Arch::llama ? "llama" : a == Arch::qwen2 ? "qwen2" : "qwen3";
}

// Generous limits (the largest public models are far inside them) that keep every size product
// in 64 bits and every q_dim / kv_dim in an int. Memory is checked where weights are allocated.
constexpr int kMaxHidden = 1 << 17, kMaxInter = 1 << 20, kMaxLayers = 1024, kMaxHeads = 1024,
              kMaxHeadDim = 2048, kMaxVocab = 1 << 24, kMaxPos = 1 << 30;

int64_t config_param_count(const ModelConfig& c) {
  const int64_t H = c.hidden, I = c.inter, Q = c.q_dim(), KV = c.kv_dim(), D = c.head_dim;
  int64_t layer = 2 * H + Q * H + 2 * KV * H + H * Q + 3 * I * H;
  if (c.qkv_bias()) layer += Q + 2 * KV;
  if (c.o_bias()) layer += H;
  if (c.qk_norm()) layer += 2 * D;
  return int64_t(c.vocab) * H * (c.tie_embeddings ? 1 : 2) + H + c.layers * layer;
}

void validate(const ModelConfig& c, const std::string& what) {
  const char* w = what.c_str();
  auto in = [&](long long v, const char* key, long long hi) {
    TOPK_CHECK(v >= 1 && v <= hi, "%s: %s must be in [1, %lld], got %lld", w, key, hi, v);
  };
  in(c.hidden, "hidden_size", kMaxHidden);
  in(c.inter, "intermediate_size", kMaxInter);
  in(c.layers, "num_hidden_layers", kMaxLayers);
  in(c.heads, "num_attention_heads", kMaxHeads);
  in(c.kv_heads, "num_key_value_heads", kMaxHeads);
  in(c.head_dim, "head_dim", kMaxHeadDim);
  in(c.vocab, "vocab_size", kMaxVocab);
  in(c.max_pos, "max_position_embeddings", kMaxPos);
  TOPK_CHECK(c.heads % c.kv_heads == 0,
             "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", w,
             c.heads, c.kv_heads);
  TOPK_CHECK(c.head_dim % 2 == 0, "%s: head_dim must be even for RoPE, got %d", w, c.head_dim);
  TOPK_CHECK(c.arch != Arch::qwen2 || c.head_dim * c.heads == c.hidden,
             "%s: Qwen2 needs hidden_size (%d) = num_attention_heads (%d) * head_dim (%d)", w,
             c.hidden, c.heads, c.head_dim);
  TOPK_CHECK(c.rms_eps > 0 && std::isfinite(c.rms_eps), "%s: rms_norm_eps must be positive, got %g",
             w, double(c.rms_eps));
  TOPK_CHECK(c.rope.theta > 0 && std::isfinite(c.rope.theta), "%s: rope_theta must be positive, "
             "got %g", w, c.rope.theta);
  if (c.rope.llama3) {
    TOPK_CHECK(c.rope.factor >= 1 && std::isfinite(c.rope.factor), "%s: llama3 rope factor must "
               "be >= 1, got %g", w, c.rope.factor);
    TOPK_CHECK(c.rope.low_freq_factor > 0 && c.rope.high_freq_factor > c.rope.low_freq_factor &&
                   std::isfinite(c.rope.high_freq_factor),
               "%s: llama3 rope needs 0 < low_freq_factor < high_freq_factor, got %g and %g", w,
               c.rope.low_freq_factor, c.rope.high_freq_factor);
    in(c.rope.original_max_pos, "rope original_max_position_embeddings", kMaxPos);
  }
  TOPK_CHECK(c.dtype == "float32" || c.dtype == "bfloat16" || c.dtype == "float16",
             "%s: torch_dtype '%s' not supported (float32, bfloat16 or float16)", w, c.dtype.c_str());
  auto tok = [&](int id, const char* key) {
    TOPK_CHECK(id >= -1 && id < c.vocab, "%s: %s = %d is outside the vocabulary [0, %d)", w, key,
               id, c.vocab);
  };
  tok(c.bos, "bos_token_id");
  tok(c.pad, "pad_token_id");
  tok(c.eos, "eos_token_id");
  for (int e : c.eos_ids) tok(e, "eos_token_id");
  const int given = int(c.index_n_heads != 0) + int(c.index_head_dim != 0) + int(c.index_topk != 0);
  TOPK_CHECK(given == 0 || given == 3, "%s: an indexer needs all of index_n_heads, index_head_dim "
             "and index_topk (got %d, %d, %d)", w, c.index_n_heads, c.index_head_dim, c.index_topk);
  if (given == 3) {
    in(c.index_n_heads, "index_n_heads", kMaxHeads);
    in(c.index_head_dim, "index_head_dim", kMaxHeadDim);
    in(c.index_topk, "index_topk", int64_t(1) << 30);
    TOPK_CHECK(c.index_head_dim % 2 == 0, "%s: index_head_dim must be even for RoPE, got %d", w,
               c.index_head_dim);
    TOPK_CHECK(c.index_rope_head_dim >= 0 && c.index_rope_head_dim <= c.index_head_dim &&
                   c.index_rope_head_dim % 2 == 0,
               "%s: index_rope_head_dim must be even and in [0, index_head_dim = %d], got %d", w,
               c.index_head_dim, c.index_rope_head_dim);
  } else {
    TOPK_CHECK(c.index_rope_head_dim == 0, "%s: index_rope_head_dim without an indexer", w);
  }
  if (c.tokenizer.present) {
    TOPK_CHECK(c.vocab >= 259, "%s: the byte tokenizer needs vocab_size >= 259, got %d", w, c.vocab);
    for (int id : {c.tokenizer.bos, c.tokenizer.eos, c.tokenizer.pad})
      TOPK_CHECK(id >= 256 && id < c.vocab, "%s: byte tokenizer special id %d must be in [256, %d)",
                 w, id, c.vocab);
  }
}

// Sizes: integers in [1, 2^31 - 1] here (validate() applies the limits); token ids: -1 (none) or
// an id, checked against the vocabulary by validate().
static int get_int(const json& j, const char* key, const std::string& what, bool required, int dflt,
                   int lo = 1) {
  TOPK_CHECK(!required || (j.contains(key) && !j[key].is_null()), "%s: missing required key '%s'",
             what.c_str(), key);
  return int(json_int(j, key, what, lo, INT32_MAX, dflt));
}

// The rope type: "rope_type", or the legacy "type"; both given must agree.
static std::string rope_type(const json& r, const std::string& what) {
  std::string a = json_string(r, "rope_type", what, ""), b = json_string(r, "type", what, "");
  TOPK_CHECK(a.empty() || b.empty() || a == b, "%s: rope_type '%s' and type '%s' disagree; keep "
             "one", what.c_str(), a.c_str(), b.c_str());
  return !a.empty() ? a : !b.empty() ? b : "default";
}

static RopeConfig parse_rope(const json& r, const std::string& what, RopeConfig rope) {
  TOPK_CHECK(r.is_object(), "%s must be an object", what.c_str());
  std::string type = rope_type(r, what);
  rope.theta = json_real(r, "rope_theta", what, {0, 1e30, true}, rope.theta);
  if (type == "default") return rope;
  TOPK_CHECK(type == "llama3", "%s: rope type '%s' is not supported (default or llama3)",
             what.c_str(), type.c_str());
  rope.llama3 = true;
  TOPK_CHECK(r.contains("factor"), "%s: llama3 rope scaling needs 'factor'", what.c_str());
  rope.factor = json_real(r, "factor", what, {1, 1e6}, rope.factor);
  rope.low_freq_factor = json_real(r, "low_freq_factor", what, {0, 1e6, true}, rope.low_freq_factor);
  rope.high_freq_factor = json_real(r, "high_freq_factor", what, {0, 1e6, true}, rope.high_freq_factor);
  rope.original_max_pos = get_int(r, "original_max_position_embeddings", what, true, 0);
  return rope;
}

static std::string rope_str(const RopeConfig& r) {
  char b[160];
  if (!r.llama3) std::snprintf(b, sizeof b, "default, theta %g", r.theta);
  else std::snprintf(b, sizeof b, "llama3, theta %g, factor %g, low %g, high %g, original %d",
                     r.theta, r.factor, r.low_freq_factor, r.high_freq_factor, r.original_max_pos);
  return b;
}

// rope_theta + rope_scaling (transformers 4) and rope_parameters (transformers 5): what a file
// states in both forms must agree (topk writes both).
static RopeConfig read_rope(const json& j, const std::string& what) {
  auto present = [&](const char* k) { return j.contains(k) && !j[k].is_null(); };
  RopeConfig base;
  base.theta = json_real(j, "rope_theta", what, {0, 1e30, true}, base.theta);
  RopeConfig a = present("rope_scaling") ? parse_rope(j["rope_scaling"], what + " rope_scaling", base)
                                         : base;
  if (!present("rope_parameters")) return a;
  RopeConfig b = parse_rope(j["rope_parameters"], what + " rope_parameters", base);
  std::string sa = rope_str(a), sb = rope_str(b);
  if (present("rope_scaling"))
    TOPK_CHECK(sa == sb, "%s: rope_scaling (%s) and rope_parameters (%s) disagree; keep one",
               what.c_str(), sa.c_str(), sb.c_str());
  else if (present("rope_theta"))
    TOPK_CHECK(a.theta == b.theta, "%s: rope_theta %g and rope_parameters' rope_theta %g "
               "disagree; keep one", what.c_str(), a.theta, b.theta);
  return b;
}

ModelConfig config_from_json_text(const std::string& text, const std::string& what) {
  json j = parse_json(text, what);
  const char* w = what.c_str();
  TOPK_CHECK(j.is_object(), "%s: must be a JSON object", w);
  ModelConfig c;
  std::string arch;
  if (j.contains("architectures")) {
    TOPK_CHECK(j["architectures"].is_array() && j["architectures"].size() == 1 &&
                   j["architectures"][0].is_string(),
               "%s: 'architectures' must list exactly one architecture", w);
    arch = j["architectures"][0].get<std::string>();
  }
  std::string mt = j.contains("model_type") && j["model_type"].is_string()
                       ? j["model_type"].get<std::string>() : "";
  if (arch.empty()) arch = mt == "llama" ? "LlamaForCausalLM" : mt == "qwen2" ? "Qwen2ForCausalLM"
                         : mt == "qwen3" ? "Qwen3ForCausalLM" : "";
  if (arch == "LlamaForCausalLM") c.arch = Arch::llama;
  else if (arch == "Qwen2ForCausalLM") c.arch = Arch::qwen2;
  else if (arch == "Qwen3ForCausalLM") c.arch = Arch::qwen3;
  else TOPK_CHECK(false, "%s: architecture '%s' is not supported (LlamaForCausalLM, "
                  "Qwen2ForCausalLM, Qwen3ForCausalLM)", w, arch.empty() ? "(none)" : arch.c_str());
  TOPK_CHECK(mt.empty() || mt == model_type(c.arch), "%s: model_type '%s' does not match "
             "architecture %s", w, mt.c_str(), arch.c_str());

  c.hidden = get_int(j, "hidden_size", what, true, 0);
  c.inter = get_int(j, "intermediate_size", what, true, 0);
  c.layers = get_int(j, "num_hidden_layers", what, true, 0);
  c.heads = get_int(j, "num_attention_heads", what, true, 0);
  c.kv_heads = get_int(j, "num_key_value_heads", what, false, c.heads);
  c.vocab = get_int(j, "vocab_size", what, true, 0);
  TOPK_CHECK(c.heads > 0, "%s: num_attention_heads must be positive, got %d", w, c.heads);
  c.head_dim = get_int(j, "head_dim", what, false, 0);
  if (c.head_dim == 0) {
    TOPK_CHECK(c.hidden % c.heads == 0, "%s: no head_dim given and hidden_size (%d) is not a "
               "multiple of num_attention_heads (%d)", w, c.hidden, c.heads);
    c.head_dim = c.hidden / c.heads;
  }
  c.rms_eps = json_real(j, "rms_norm_eps", what, {0, 1, true}, 1e-6);
  c.max_pos = get_int(j, "max_position_embeddings", what, false, 2048);
  c.tie_embeddings = json_bool(j, "tie_word_embeddings", what, false);
  c.attention_bias = json_bool(j, "attention_bias", what, false);
  c.rope = read_rope(j, what);
  for (const char* k : {"torch_dtype", "dtype"})
    if (j.contains(k) && j[k].is_string()) c.dtype = j[k].get<std::string>();
  c.bos = get_int(j, "bos_token_id", what, false, -1, -1);
  c.pad = get_int(j, "pad_token_id", what, false, -1, -1);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
    for (const auto& e : j["eos_token_id"]) {
      c.eos_ids.push_back(int(json_int(json{{"eos_token_id", e}}, "eos_token_id", what, 0,
                                       INT32_MAX, 0)));
    }
  } else {
    int e = get_int(j, "eos_token_id", what, false, -1, -1);
    if (e >= 0) c.eos_ids.push_back(e);
  }
  c.eos = c.eos_ids.empty() ? -1 : c.eos_ids[0];

  // Options whose other values change the math: refuse them rather than compute wrong logits.
  if (j.contains("hidden_act") && j["hidden_act"].is_string())
    TOPK_CHECK(j["hidden_act"] == "silu", "%s: hidden_act '%s' not supported (silu)", w,
               j["hidden_act"].get<std::string>().c_str());
  TOPK_CHECK(!json_bool(j, "mlp_bias", what, false), "%s: mlp_bias = true is not supported", w);
  TOPK_CHECK(!json_bool(j, "use_sliding_window", what, false), "%s: use_sliding_window = true is not "
             "supported", w);
  if (j.contains("pretraining_tp"))
    TOPK_CHECK(get_int(j, "pretraining_tp", what, false, 1) == 1, "%s: pretraining_tp must be 1", w);
  if (j.contains("layer_types") && j["layer_types"].is_array())
    for (const auto& t : j["layer_types"])
      TOPK_CHECK(t == "full_attention", "%s: layer type %s not supported (full_attention)", w,
                 t.dump().c_str());

  c.index_n_heads = get_int(j, "index_n_heads", what, false, 0);
  c.index_head_dim = get_int(j, "index_head_dim", what, false, 0);
  c.index_topk = get_int(j, "index_topk", what, false, 0);
  c.index_rope_head_dim = get_int(j, "index_rope_head_dim", what, false,
                                  c.index_n_heads > 0 && c.index_head_dim > 0 ? c.index_head_dim / 2 : 0);
  if (j.contains("topk_tokenizer")) {
    const json& t = j["topk_tokenizer"];
    TOPK_CHECK(t.is_object() && json_string(t, "type", what + " topk_tokenizer", "") == "bytes",
               "%s: topk_tokenizer must be {\"type\": \"bytes\", \"bos\", \"eos\", \"pad\"}", w);
    c.tokenizer.present = true;
    c.tokenizer.bos = get_int(t, "bos", what, true, 0, 0);
    c.tokenizer.eos = get_int(t, "eos", what, true, 0, 0);
    c.tokenizer.pad = get_int(t, "pad", what, true, 0, 0);
  }
  static const std::set<std::string> used = {
      "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
      "num_attention_heads", "num_key_value_heads", "vocab_size", "head_dim", "rms_norm_eps",
      "max_position_embeddings", "tie_word_embeddings", "attention_bias", "rope_theta",
      "rope_scaling", "rope_parameters", "torch_dtype", "dtype", "bos_token_id", "pad_token_id",
      "eos_token_id", "hidden_act", "mlp_bias", "use_sliding_window", "pretraining_tp",
      "layer_types", "topk_tokenizer", "index_n_heads", "index_head_dim", "index_topk",
      "index_rope_head_dim"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!used.count(it.key())) c.ignored_keys.push_back(it.key());
  validate(c, what);
  return c;
}

std::string config_to_json_text(const ModelConfig& c) {
  validate(c);
  json j;
  j["architectures"] = {arch_name(c.arch)};
  j["model_type"] = model_type(c.arch);
  j["hidden_size"] = c.hidden;
  j["intermediate_size"] = c.inter;
  j["num_hidden_layers"] = c.layers;
  j["num_attention_heads"] = c.heads;
  j["num_key_value_heads"] = c.kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab;
  j["rms_norm_eps"] = c.rms_eps;
  j["max_position_embeddings"] = c.max_pos;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["hidden_act"] = "silu";
  if (c.arch != Arch::qwen2) j["attention_bias"] = c.attention_bias;
  if (c.arch != Arch::llama) j["use_sliding_window"] = false;
  j["rope_theta"] = c.rope.theta;
  json rp = {{"rope_type", "default"}, {"rope_theta", c.rope.theta}};
  if (c.rope.llama3) {
    json s = {{"rope_type", "llama3"}, {"factor", c.rope.factor},
              {"low_freq_factor", c.rope.low_freq_factor},
              {"high_freq_factor", c.rope.high_freq_factor},
              {"original_max_position_embeddings", c.rope.original_max_pos}};
    j["rope_scaling"] = s;
    rp = s;
    rp["rope_theta"] = c.rope.theta;
  }
  j["rope_parameters"] = rp;
  j["torch_dtype"] = c.dtype;
  j["bos_token_id"] = c.bos >= 0 ? json(c.bos) : json(nullptr);
  if (c.eos_ids.size() > 1) j["eos_token_id"] = c.eos_ids;
  else j["eos_token_id"] = c.eos >= 0 ? json(c.eos) : json(nullptr);
  j["pad_token_id"] = c.pad >= 0 ? json(c.pad) : json(nullptr);
  if (c.has_indexer()) {
    j["index_n_heads"] = c.index_n_heads;
    j["index_head_dim"] = c.index_head_dim;
    j["index_topk"] = c.index_topk;
    j["index_rope_head_dim"] = c.index_rope_head_dim;
  }
  if (c.tokenizer.present)
    j["topk_tokenizer"] = {{"type", "bytes"}, {"bos", c.tokenizer.bos}, {"eos", c.tokenizer.eos},
                           {"pad", c.tokenizer.pad}};
  return j.dump(2) + "\n";
}

ModelConfig load_config(const std::string& dir) {
  std::string path = dir + "/config.json";
  return config_from_json_text(read_file(path), path);
}

void save_config(const std::string& dir, const ModelConfig& c) {
  write_file_atomic(dir + "/config.json", config_to_json_text(c));
}

}  // namespace topk
