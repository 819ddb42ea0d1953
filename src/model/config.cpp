#include "model/config.h"

#include <cmath>
#include <set>

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

void validate(const ModelConfig& c, const std::string& what) {
  const char* w = what.c_str();
  auto pos = [&](long long v, const char* key) {
    TOPK_CHECK(v > 0, "%s: %s must be positive, got %lld", w, key, v);
  };
  pos(c.hidden, "hidden_size");
  pos(c.inter, "intermediate_size");
  pos(c.layers, "num_hidden_layers");
  pos(c.heads, "num_attention_heads");
  pos(c.kv_heads, "num_key_value_heads");
  pos(c.head_dim, "head_dim");
  pos(c.vocab, "vocab_size");
  pos(c.max_pos, "max_position_embeddings");
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
    TOPK_CHECK(c.rope.factor >= 1, "%s: llama3 rope factor must be >= 1, got %g", w, c.rope.factor);
    TOPK_CHECK(c.rope.low_freq_factor > 0 && c.rope.high_freq_factor > c.rope.low_freq_factor,
               "%s: llama3 rope needs 0 < low_freq_factor < high_freq_factor, got %g and %g", w,
               c.rope.low_freq_factor, c.rope.high_freq_factor);
    pos(c.rope.original_max_pos, "rope original_max_position_embeddings");
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
    pos(c.index_n_heads, "index_n_heads");
    pos(c.index_head_dim, "index_head_dim");
    pos(c.index_topk, "index_topk");
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

static int get_int(const json& j, const char* key, const std::string& what, bool required, int dflt) {
  if (!j.contains(key) || j[key].is_null()) {
    TOPK_CHECK(!required, "%s: missing required key '%s'", what.c_str(), key);
    return dflt;
  }
  TOPK_CHECK(j[key].is_number_integer(), "%s: '%s' must be an integer, got %s", what.c_str(), key,
             j[key].dump().c_str());
  long long v = j[key].get<long long>();
  TOPK_CHECK(v >= -1 && v <= (1ll << 31) - 1, "%s: '%s' = %lld is out of range", what.c_str(), key, v);
  return int(v);
}
static double get_num(const json& j, const char* key, const std::string& what, double dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  TOPK_CHECK(j[key].is_number(), "%s: '%s' must be a number, got %s", what.c_str(), key,
             j[key].dump().c_str());
  return j[key].get<double>();
}
static bool get_bool(const json& j, const char* key, const std::string& what, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  TOPK_CHECK(j[key].is_boolean(), "%s: '%s' must be true or false, got %s", what.c_str(), key,
             j[key].dump().c_str());
  return j[key].get<bool>();
}

static void parse_rope(const json& r, const std::string& what, RopeConfig& rope) {
  TOPK_CHECK(r.is_object(), "%s: rope_scaling / rope_parameters must be an object", what.c_str());
  std::string type = "default";
  for (const char* k : {"rope_type", "type"})
    if (r.contains(k) && r[k].is_string()) type = r[k].get<std::string>();
  rope.theta = get_num(r, "rope_theta", what, rope.theta);
  if (type == "default") return;
  TOPK_CHECK(type == "llama3", "%s: rope type '%s' is not supported (default or llama3)",
             what.c_str(), type.c_str());
  rope.llama3 = true;
  TOPK_CHECK(r.contains("factor"), "%s: llama3 rope scaling needs 'factor'", what.c_str());
  rope.factor = get_num(r, "factor", what, rope.factor);
  rope.low_freq_factor = get_num(r, "low_freq_factor", what, rope.low_freq_factor);
  rope.high_freq_factor = get_num(r, "high_freq_factor", what, rope.high_freq_factor);
  rope.original_max_pos = get_int(r, "original_max_position_embeddings", what, true, 0);
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
  c.rms_eps = get_num(j, "rms_norm_eps", what, 1e-6);
  c.max_pos = get_int(j, "max_position_embeddings", what, false, 2048);
  c.tie_embeddings = get_bool(j, "tie_word_embeddings", what, false);
  c.attention_bias = get_bool(j, "attention_bias", what, false);
  c.rope.theta = get_num(j, "rope_theta", what, c.rope.theta);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) parse_rope(j["rope_scaling"], what, c.rope);
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null())
    parse_rope(j["rope_parameters"], what, c.rope);
  for (const char* k : {"torch_dtype", "dtype"})
    if (j.contains(k) && j[k].is_string()) c.dtype = j[k].get<std::string>();
  c.bos = get_int(j, "bos_token_id", what, false, -1);
  c.pad = get_int(j, "pad_token_id", what, false, -1);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
    for (const auto& e : j["eos_token_id"]) {
      TOPK_CHECK(e.is_number_integer(), "%s: eos_token_id entries must be integers", w);
      c.eos_ids.push_back(e.get<int>());
    }
  } else {
    int e = get_int(j, "eos_token_id", what, false, -1);
    if (e >= 0) c.eos_ids.push_back(e);
  }
  c.eos = c.eos_ids.empty() ? -1 : c.eos_ids[0];

  // Options whose other values change the math: refuse them rather than compute wrong logits.
  if (j.contains("hidden_act") && j["hidden_act"].is_string())
    TOPK_CHECK(j["hidden_act"] == "silu", "%s: hidden_act '%s' not supported (silu)", w,
               j["hidden_act"].get<std::string>().c_str());
  TOPK_CHECK(!get_bool(j, "mlp_bias", what, false), "%s: mlp_bias = true is not supported", w);
  TOPK_CHECK(!get_bool(j, "use_sliding_window", what, false), "%s: use_sliding_window = true is not "
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
    TOPK_CHECK(t.is_object() && t.value("type", "") == "bytes",
               "%s: topk_tokenizer must be {\"type\": \"bytes\", \"bos\", \"eos\", \"pad\"}", w);
    c.tokenizer.present = true;
    c.tokenizer.bos = get_int(t, "bos", what, true, 0);
    c.tokenizer.eos = get_int(t, "eos", what, true, 0);
    c.tokenizer.pad = get_int(t, "pad", what, true, 0);
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
