#include "model/model.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "core/check.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/ops.h"
#include "model/rope.h"
#include "model/views.h"
#include "topk/core.h"

namespace topk {

float* Model::host() {
  TOPK_CHECK(!w.view().empty() && w.view().device == Device::cpu, "model: the weights are on "
             "%s, not on the host", device_name(device()));
  return w.ptr<float>();
}
const float* Model::host() const { return const_cast<Model*>(this)->host(); }

TensorView param_at(const TensorView& flat, size_t off, std::initializer_list<int64_t> shape) {
  return off == kNoParam ? TensorView{} : view_at(flat, int64_t(off), shape);
}

TensorView param_view(const Model& m, size_t off, std::initializer_list<int64_t> shape) {
  return param_at(m.w.view().empty() ? m.wc.view() : m.w.view(), off, shape);
}

TensorView matrix_view(const Model& m, size_t off, int64_t rows, int64_t cols) {
  const Buffer& b = m.compute() == DType::bf16 ? m.wc : m.w;
  return view_at(b.view(), int64_t(off), {rows, cols});
}

void model_sync_compute(Model& m) {
  if (m.compute() == DType::bf16 && !m.w.view().empty()) ops::convert(m.wc, m.w);
}

void model_to(Model& m, Device device, bool keep_master, DType compute) {
  TOPK_CHECK(compute == DType::bf16 || compute == DType::f32,
             "model: compute dtype %s (bf16 or f32)", dtype_name(compute));
  TOPK_CHECK(device == Device::cpu || compute == DType::bf16 || keep_master,
             "model: f32 compute on CUDA keeps the f32 weights (keep_master)");
  if (device == m.device() &&
      (device == Device::cpu || (keep_master == !m.w.view().empty() && compute == m.compute())))
    return;
  if (device == Device::cpu) {
    std::vector<float> h = model_host_weights(m);
    m.w = Buffer(DType::f32, {m.numel}, Device::cpu);
    std::copy(h.begin(), h.end(), m.host());
    m.wc = Buffer();
  } else {
    TOPK_CHECK(cuda_available(), "model: no CUDA device (this build %s the CUDA backend)",
#ifdef TOPK_HAVE_CUDA
               "has"
#else
               "lacks"
#endif
    );
    TOPK_CHECK(!m.w.view().empty(), "model: cannot move a model without master weights");
    Buffer w(DType::f32, {m.numel}, Device::cuda);
    copy(w, m.w);
    m.wc = Buffer();
    if (compute == DType::bf16) {
      m.wc = Buffer(DType::bf16, {m.numel}, Device::cuda);
      ops::convert(m.wc, w);
    }
    m.w = keep_master ? std::move(w) : Buffer();
  }
  Buffer f(DType::f32, {m.inv_freq.numel()}, device);
  copy(f, m.inv_freq);
  m.inv_freq = std::move(f);
  if (!m.index_inv_freq.view().empty()) {
    Buffer fi(DType::f32, {m.index_inv_freq.numel()}, device);
    copy(fi, m.index_inv_freq);
    m.index_inv_freq = std::move(fi);
  }
}

std::vector<float> model_host_weights(const Model& m) {
  std::vector<float> h(size_t(m.numel));
  TensorView dst = make_view(h.data(), DType::f32, {m.numel});
  if (!m.w.view().empty()) {
    copy(dst, m.w);
  } else {  // bf16 on the device: bring the bits over, then widen on the host
    Buffer b(DType::bf16, {m.numel}, Device::cpu);
    copy(b, m.wc);
    copy(dst, b);
  }
  return h;
}

int64_t model_weight_bytes(const Model& m) {
  return m.numel * (m.compute() == DType::bf16 ? 2 : 4);
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu;
  if (s == "cuda") {
    TOPK_CHECK(cuda_available(), "--device cuda: no CUDA device is available%s",
#ifdef TOPK_HAVE_CUDA
               ""
#else
               " (this build of topk has no CUDA backend: nvcc was not found at configure time)"
#endif
    );
    return Device::cuda;
  }
  TOPK_CHECK(s == "auto", "unknown device '%s' (cpu, cuda or auto)", s.c_str());
  return cuda_available() ? Device::cuda : Device::cpu;
}

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

Model model_create(const ModelConfig& cfg) {
  validate(cfg);
  char what[96];
  std::snprintf(what, sizeof what, "a model of %.3g parameters (fp32 weights)",
                double(config_param_count(cfg)));
  check_memory(4.0 * double(config_param_count(cfg)), what);
  Model m;
  m.cfg = cfg;
  size_t at = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
    ParamInfo p;
    p.name = name;
    p.shape = shape;
    p.offset = at;
    p.numel = 1;
    for (int64_t s : shape) p.numel *= s;
    p.decay = decay;
    at += size_t(p.numel);
    m.params.push_back(p);
    return p.offset;
  };
  const int64_t H = cfg.hidden, I = cfg.inter, Q = cfg.q_dim(), KV = cfg.kv_dim(), D = cfg.head_dim;
  m.embed = add("model.embed_tokens.weight", {cfg.vocab, H}, true);
  for (int l = 0; l < cfg.layers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    LayerParams lp;
    lp.in_norm = add(p + "input_layernorm.weight", {H}, false);
    lp.q = add(p + "self_attn.q_proj.weight", {Q, H}, true);
    lp.k = add(p + "self_attn.k_proj.weight", {KV, H}, true);
    lp.v = add(p + "self_attn.v_proj.weight", {KV, H}, true);
    lp.o = add(p + "self_attn.o_proj.weight", {H, Q}, true);
    bool qkvb = cfg.qkv_bias();
    lp.q_b = qkvb ? add(p + "self_attn.q_proj.bias", {Q}, false) : kNoParam;
    lp.k_b = qkvb ? add(p + "self_attn.k_proj.bias", {KV}, false) : kNoParam;
    lp.v_b = qkvb ? add(p + "self_attn.v_proj.bias", {KV}, false) : kNoParam;
    lp.o_b = cfg.o_bias() ? add(p + "self_attn.o_proj.bias", {H}, false) : kNoParam;
    lp.q_norm = cfg.qk_norm() ? add(p + "self_attn.q_norm.weight", {D}, false) : kNoParam;
    lp.k_norm = cfg.qk_norm() ? add(p + "self_attn.k_norm.weight", {D}, false) : kNoParam;
    lp.post_norm = add(p + "post_attention_layernorm.weight", {H}, false);
    lp.gate = add(p + "mlp.gate_proj.weight", {I, H}, true);
    lp.up = add(p + "mlp.up_proj.weight", {I, H}, true);
    lp.down = add(p + "mlp.down_proj.weight", {H, I}, true);
    m.layer.push_back(lp);
  }
  m.final_norm = add("model.norm.weight", {H}, false);
  m.lm_head = cfg.tie_embeddings ? m.embed : add("lm_head.weight", {cfg.vocab, H}, true);
  m.indexer_begin = at;
  m.indexer_first_param = m.params.size();
  if (cfg.has_indexer()) {
    const int64_t HI = cfg.index_n_heads, dI = cfg.index_head_dim;
    for (int l = 0; l < cfg.layers; l++) {
      std::string p = "model.layers." + std::to_string(l) + ".self_attn.indexer.";
      LayerParams& lp = m.layer[size_t(l)];
      lp.ix_q = add(p + "wq.weight", {HI * dI, H}, true);
      lp.ix_k = add(p + "wk.weight", {dI, H}, true);
      lp.ix_norm = add(p + "k_norm.weight", {dI}, false);
      lp.ix_norm_b = add(p + "k_norm.bias", {dI}, false);
      lp.ix_w = add(p + "weights_proj.weight", {HI, H}, true);
    }
    std::vector<float> fi = index_inv_freq(cfg);
    m.index_inv_freq = Buffer(DType::f32, {int64_t(fi.size())}, Device::cpu);
    std::copy(fi.begin(), fi.end(), m.index_inv_freq.ptr<float>());
  }
  m.numel = int64_t(at);
  m.w = Buffer(DType::f32, {m.numel}, Device::cpu);
  std::vector<float> f = rope_inv_freq(cfg);
  m.inv_freq = Buffer(DType::f32, {int64_t(f.size())}, Device::cpu);
  std::copy(f.begin(), f.end(), m.inv_freq.ptr<float>());
  m.tok = tokenizer_bytes(cfg.tokenizer);
  return m;
}

void model_init(Model& m, uint64_t seed, float std) {
  Rng rng(seed);
  for (const auto& p : m.params) {
    float* w = m.host() + p.offset;
    bool norm = p.name.find("norm.weight") != std::string::npos;
    bool bias = p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    for (int64_t i = 0; i < p.numel; i++) w[i] = norm ? 1.0f : bias ? 0.0f : std * rng.normal();
  }
}

int64_t model_param_count(const Model& m) { return m.numel; }

// Index of the first NaN or Inf of w[0, n), or -1. Blocks of exponent tests vectorise; the
// element is looked for only in a block that has one.
static int64_t first_non_finite(const float* w, int64_t n) {
  for (int64_t b = 0; b < n; b += 4096) {
    int64_t e = std::min<int64_t>(n, b + 4096);
    uint32_t any = 0;
    for (int64_t i = b; i < e; i++) {
      uint32_t u;
      std::memcpy(&u, w + i, 4);
      any |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
    }
    for (int64_t i = b; any && i < e; i++)
      if (!std::isfinite(w[i])) return i;
  }
  return -1;
}

// Reads one parameter from its tensor; NaN or Inf weights are an error (they would decode
// garbage without a word).
static void load_param(const StTensor& t, const ParamInfo& p, float* dst, const std::string& file) {
  TOPK_CHECK(t.dtype != DType::i32, "%s: tensor '%s' is I32; weights must be F32, BF16 or F16",
             file.c_str(), p.name.c_str());
  st_to_f32(t, dst, p.numel);
  int64_t i = first_non_finite(dst, p.numel);
  TOPK_CHECK(i < 0, "%s: tensor '%s' holds %g at element %lld; weights must be finite (a "
             "diverged or corrupt checkpoint)", file.c_str(), p.name.c_str(),
             i < 0 ? 0.0 : double(dst[i]), (long long)i);
}

void model_load_weights(Model& m, const std::string& path, bool indexer_optional) {
  SafeTensors st = st_load(path);
  for (size_t i = 0; i < m.params.size(); i++) {
    const ParamInfo& p = m.params[i];
    if (indexer_optional && i >= m.indexer_first_param && !st.find(p.name)) continue;
    load_param(st.get(p.name, p.shape), p, m.host() + p.offset, path);
  }
  // A tied model's file may still carry lm_head.weight: it must then equal the embeddings.
  if (m.cfg.tie_embeddings) {
    if (const StTensor* t = st.find("lm_head.weight")) {
      std::vector<float> h(size_t(t->numel()));
      TOPK_CHECK(t->numel() == int64_t(m.cfg.vocab) * m.cfg.hidden, "%s: lm_head.weight has shape "
                 "%s", path.c_str(), t->shape_str().c_str());
      st_to_f32(*t, h.data(), t->numel());
      TOPK_CHECK(std::memcmp(h.data(), m.at(m.embed), h.size() * 4) == 0,
                 "%s: tie_word_embeddings is true but lm_head.weight differs from "
                 "model.embed_tokens.weight", path.c_str());
    }
  }
}

// Sharded checkpoints (model.safetensors.index.json with a weight_map of tensor -> file).
static void load_sharded(Model& m, const std::string& dir, bool indexer_optional) {
  std::string path = dir + "/model.safetensors.index.json";
  json idx = read_json_file(path);
  TOPK_CHECK(idx.is_object() && idx.contains("weight_map") && idx["weight_map"].is_object(),
             "%s: no weight_map object", path.c_str());
  const json& map = idx["weight_map"];
  std::map<std::string, SafeTensors> shards;
  for (size_t i = 0; i < m.params.size(); i++) {
    const ParamInfo& p = m.params[i];
    if (indexer_optional && i >= m.indexer_first_param && !map.contains(p.name)) continue;
    TOPK_CHECK(map.contains(p.name) && map[p.name].is_string(), "%s: weight_map has no tensor '%s'",
               path.c_str(), p.name.c_str());
    std::string file = map[p.name].get<std::string>();
    TOPK_CHECK(file.find('/') == std::string::npos, "%s: shard name '%s' must be a plain file name",
               path.c_str(), file.c_str());
    if (!shards.count(file)) shards.emplace(file, st_load(dir + "/" + file));
    load_param(shards.at(file).get(p.name, p.shape), p, m.host() + p.offset, dir + "/" + file);
  }
}

void model_load_tokenizer(Model& m, const std::string& dir) {
  m.tok = tokenizer_load(dir, m.cfg);
  m.tokenizer_dir = m.tok.kind == Tokenizer::Kind::bpe ? dir : std::string();
}

Model model_load(const std::string& dir) {
  Model m = model_create(load_config(dir));
  model_load_tokenizer(m, dir);
  model_load_into(m, dir, false);
  return m;
}

void model_load_into(Model& m, const std::string& dir, bool indexer_optional) {
  struct stat sb;
  std::string single = dir + "/model.safetensors";
  if (stat(single.c_str(), &sb) != 0 && stat((dir + "/model.safetensors.index.json").c_str(), &sb) == 0)
    load_sharded(m, dir, indexer_optional);
  else
    model_load_weights(m, single, indexer_optional);
}

void make_dirs(const std::string& dir) {
  for (size_t i = 1; i <= dir.size(); i++) {
    if (i == dir.size() || dir[i] == '/') {
      std::string d = dir.substr(0, i);
      if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
        TOPK_CHECK(false, "cannot create folder %s: %s", d.c_str(), std::strerror(errno));
    }
  }
}

void model_save(const std::string& dir, const Model& m) {
  make_dirs(dir);
  DType dt = m.cfg.dtype == "bfloat16" ? DType::bf16 : m.cfg.dtype == "float16" ? DType::f16
                                                                                 : DType::f32;
  const std::vector<float> w = model_host_weights(m);  // staged through the host from any device
  std::vector<StWrite> ts;
  for (const auto& p : m.params) ts.push_back({p.name, dt, p.shape, w.data() + p.offset});
  st_save(dir + "/model.safetensors", ts, {{"format", "pt"}});
  save_config(dir, m.cfg);
  // A BPE model's folder carries its tokenizer, so the saved folder loads on its own.
  if (!m.tokenizer_dir.empty() && m.tokenizer_dir != dir)
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
      std::ifstream probe(m.tokenizer_dir + "/" + f);
      if (probe) write_file_atomic(dir + "/" + f, read_file(m.tokenizer_dir + "/" + f));
    }
}

}  // namespace topk
