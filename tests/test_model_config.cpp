// config.json for Llama, Qwen2 and Qwen3; the byte tokenizer.
#include <gtest/gtest.h>

#include <string>

#include "model/config.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "topk/core.h"

using namespace topk;

static std::string data_dir(const char* name) {
  return std::string(TOPK_SOURCE_DIR) + "/tests/data/" + name;
}

TEST(ModelConfig, ReadsHuggingFaceConfigs) {
  ModelConfig l = load_config(data_dir("hf_tiny_llama"));
  EXPECT_EQ(l.arch, Arch::llama);
  EXPECT_EQ(l.hidden, 256);
  EXPECT_EQ(l.inter, 256);
  EXPECT_EQ(l.layers, 2);
  EXPECT_EQ(l.heads, 4);
  EXPECT_EQ(l.kv_heads, 2);
  EXPECT_EQ(l.head_dim, 64);
  EXPECT_EQ(l.vocab, 300);
  EXPECT_FLOAT_EQ(l.rms_eps, 1e-5f);
  EXPECT_TRUE(l.rope.llama3);
  EXPECT_EQ(l.rope.factor, 4.0);
  EXPECT_EQ(l.rope.original_max_pos, 32);
  EXPECT_EQ(l.rope.theta, 10000.0);
  EXPECT_FALSE(l.tie_embeddings);
  EXPECT_EQ(l.bos, 256);
  EXPECT_EQ(l.eos, 257);
  EXPECT_EQ(l.pad, 258);
  EXPECT_FALSE(l.tokenizer.present);
  ModelConfig q2 = load_config(data_dir("hf_tiny_qwen2"));
  EXPECT_EQ(q2.arch, Arch::qwen2);
  EXPECT_TRUE(q2.qkv_bias());
  EXPECT_FALSE(q2.o_bias());
  ModelConfig q3 = load_config(data_dir("hf_tiny_qwen3"));
  EXPECT_EQ(q3.arch, Arch::qwen3);
  EXPECT_TRUE(q3.tie_embeddings);
  EXPECT_TRUE(q3.qk_norm());
  EXPECT_EQ(q3.rope.theta, 1e6);
  EXPECT_FALSE(q3.rope.llama3);
  bool recorded = false;
  for (auto& k : q3.ignored_keys) recorded |= k == "initializer_range";
  EXPECT_TRUE(recorded);
}

TEST(ModelConfig, RoundTripsAndReadsLegacyRope) {
  ModelConfig c = load_config(data_dir("hf_tiny_llama"));
  c.tokenizer.present = true;
  c.dtype = "bfloat16";
  c.eos_ids = {257, 1};
  c.eos = 257;
  ModelConfig d = config_from_json_text(config_to_json_text(c), "rt");
  EXPECT_EQ(d.hidden, c.hidden);
  EXPECT_EQ(d.rope.llama3, true);
  EXPECT_EQ(d.rope.high_freq_factor, 4.0);
  EXPECT_EQ(d.dtype, "bfloat16");
  EXPECT_EQ(d.eos_ids, c.eos_ids);
  EXPECT_TRUE(d.tokenizer.present);
  EXPECT_EQ(d.tokenizer.eos, 257);
  // transformers 4 style: rope_theta at top level, rope_scaling with "type".
  ModelConfig e = config_from_json_text(R"({"architectures": ["LlamaForCausalLM"],
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 4, "vocab_size": 10, "rope_theta": 500000.0,
    "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "torch_dtype": "bfloat16", "eos_token_id": [3, 4]})", "legacy");
  EXPECT_EQ(e.kv_heads, 4);
  EXPECT_EQ(e.head_dim, 8);
  EXPECT_EQ(e.rope.theta, 500000.0);
  EXPECT_TRUE(e.rope.llama3);
  EXPECT_EQ(e.eos, 3);
  EXPECT_EQ(e.dtype, "bfloat16");
}

static std::string config_error(const std::string& text) {
  try {
    config_from_json_text(text, "cfg");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, RejectsInconsistentConfigs) {
  std::string base = R"("architectures": ["LlamaForCausalLM"], "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 1, "vocab_size": 10)";
  auto has = [](const std::string& err, const char* what) {
    EXPECT_NE(err.find(what), std::string::npos) << "error was: '" << err << "'";
  };
  EXPECT_EQ(config_error("{" + base + R"(, "num_attention_heads": 4})"), "");
  has(config_error("{" + base + R"(, "num_attention_heads": 4, "num_key_value_heads": 3})"),
      "multiple of num_key_value_heads");
  has(config_error("{" + base + R"(, "num_attention_heads": 5})"), "not a multiple");
  has(config_error("{" + base + "}"), "missing required key 'num_attention_heads'");
  has(config_error("{" + base + R"(, "num_attention_heads": 4, "hidden_act": "gelu"})"),
      "hidden_act 'gelu'");
  has(config_error("{" + base + R"(, "num_attention_heads": 4, "rope_scaling": {"rope_type": "yarn", "factor": 2}})"),
      "rope type 'yarn'");
  has(config_error("{" + base + R"(, "num_attention_heads": 4, "eos_token_id": 10})"),
      "outside the vocabulary");
  has(config_error("{" + base + R"(, "num_attention_heads": "4"})"), "must be an integer");
  has(config_error(R"({"architectures": ["GPT2LMHeadModel"]})"), "not supported");
  has(config_error(R"({"architectures": ["LlamaForCausalLM"], "model_type": "qwen3"})"),
      "does not match");
  has(config_error("{" + base + R"(, "num_attention_heads": 4, "topk_tokenizer": {"type": "bytes", "bos": 256, "eos": 257, "pad": 258}})"),
      "vocab_size >= 259");
  has(config_error("{oops"), "invalid JSON");
  // Found by fuzz_config: a non-string tokenizer type escaped as a JSON library exception.
  has(config_error("{" + base + R"(, "num_attention_heads": 4, "topk_tokenizer": {"type": 5}})"),
      "topk_tokenizer: 'type' must be a string, got 5");
}

// Sizes that used to crash or hang (bad_alloc, length_error, int overflow in q_dim, endless
// allocation) and rope/eos fields that were silently misread: each is a clear error now.
TEST(ModelConfig, RefusesAbsurdSizesAndAmbiguousFields) {
  std::string base = R"("architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1,
      "num_attention_heads": 1, "vocab_size": 10)";
  auto with = [&](const std::string& fields) {
    return config_error("{" + base + ", " + fields + "}");
  };
  auto has = [](const std::string& err, const char* what) {
    EXPECT_NE(err.find(what), std::string::npos) << "error was: '" << err << "'";
  };
  EXPECT_EQ(with(R"("hidden_size": 32, "intermediate_size": 64)"), "");
  has(with(R"("hidden_size": 2147483646, "intermediate_size": 64)"),
      "hidden_size must be in [1, 131072], got 2147483646");
  has(with(R"("hidden_size": 32, "intermediate_size": 2147483647)"),
      "intermediate_size must be in [1, 1048576], got 2147483647");
  has(config_error(R"({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1,
      "num_attention_heads": 1, "hidden_size": 32, "intermediate_size": 64,
      "vocab_size": 2147483647})"), "vocab_size must be in [1, 16777216], got 2147483647");
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "head_dim": 1073741824)"),
      "head_dim must be in [1, 2048], got 1073741824");
  has(config_error(R"({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2147483647,
      "num_attention_heads": 1, "hidden_size": 32, "intermediate_size": 64, "vocab_size": 10})"),
      "num_hidden_layers must be in [1, 1024], got 2147483647");
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "max_position_embeddings": 2147483648)"),
      "'max_position_embeddings' must be an integer in [1, 2147483647], got 2147483648");
  has(with(R"("hidden_size": 32.5, "intermediate_size": 64)"), "got 32.5");
  EXPECT_EQ(with(R"("hidden_size": 32.0, "intermediate_size": 64)"), "");
  // eos_token_id [4294967553] used to wrap to 257.
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "eos_token_id": [4294967553])"),
      "'eos_token_id' must be an integer in [0, 2147483647], got 4294967553");
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "eos_token_id": [3, 12])"),
      "eos_token_id = 12 is outside the vocabulary [0, 10)");
  // rope_type yarn + legacy type default used to drop yarn; rope_type 5 meant default.
  has(with(R"("hidden_size": 32, "intermediate_size": 64,
      "rope_parameters": {"rope_type": "yarn", "type": "default", "factor": 2})"),
      "rope_type 'yarn' and type 'default' disagree");
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "rope_parameters": {"rope_type": 5})"),
      "'rope_type' must be a string, got 5");
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "rope_theta": 10000,
      "rope_parameters": {"rope_type": "default", "rope_theta": 500000})"),
      "rope_theta 10000 and rope_parameters' rope_theta 500000 disagree");
  has(with(R"("hidden_size": 32, "intermediate_size": 64,
      "rope_scaling": {"rope_type": "llama3", "factor": 8, "original_max_position_embeddings": 64},
      "rope_parameters": {"rope_type": "default"})"),
      "rope_scaling (llama3, theta 10000, factor 8, low 1, high 4, original 64) and "
      "rope_parameters (default, theta 10000) disagree");
  has(with(R"("hidden_size": 32, "intermediate_size": 64, "rope_theta": -1)"), "'rope_theta' must be a number in (0, 1e+30], got -1");
  // The same RoPE in both forms (as topk writes llama3 models) is accepted.
  EXPECT_EQ(with(R"("hidden_size": 32, "intermediate_size": 64, "rope_theta": 500000,
      "rope_scaling": {"rope_type": "llama3", "factor": 8, "original_max_position_embeddings": 64},
      "rope_parameters": {"rope_type": "llama3", "factor": 8, "rope_theta": 500000,
                          "original_max_position_embeddings": 64})"), "");
}

// The weights a valid config asks for are counted in 64 bits and checked against the memory.
TEST(ModelConfig, ParameterCountIs64BitAndMemoryIsChecked) {
  ModelConfig c = config_from_json_text(R"({"architectures": ["LlamaForCausalLM"],
      "hidden_size": 131072, "intermediate_size": 1048576, "num_hidden_layers": 1024,
      "num_attention_heads": 1024, "head_dim": 2048, "vocab_size": 16777216})", "big");
  EXPECT_GT(config_param_count(c), int64_t(1) << 48);
  EXPECT_EQ(c.q_dim(), 1 << 21);
  try {
    model_create(c);
    ADD_FAILURE() << "a model of 2^48+ parameters was created";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GB needed, more than the"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, BytesRoundTrip) {
  TokenizerConfig t;
  t.present = true;
  std::string text = "héllo\n\x01";
  std::vector<int> ids = tok_encode(t, text, true);
  EXPECT_EQ(ids[0], 256);
  EXPECT_EQ(ids.size(), text.size() + 1);
  ids.push_back(t.eos);
  EXPECT_EQ(tok_decode(t, ids), text);
  TokenizerConfig none;
  EXPECT_THROW(tok_encode(none, "a", false), Error);
}
