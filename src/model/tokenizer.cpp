#include "model/tokenizer.h"

#include <sys/stat.h>

#include <algorithm>

#include "core/json.h"
#include "model/bpe.h"
#include "topk/core.h"

namespace topk {

static_assert(sizeof(int) == sizeof(int32_t), "token ids are int");

static bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

static const char* kNoTokenizer =
    "this checkpoint has no tokenizer (no tokenizer.json, and no \"topk_tokenizer\" in its "
    "config.json); pass token ids instead of text";

Tokenizer tokenizer_bytes(const TokenizerConfig& c) {
  Tokenizer t;
  if (!c.present) {
    t.name = "none";
    return t;
  }
  t.kind = Tokenizer::Kind::bytes;
  t.name = "bytes";
  t.bos = c.bos;
  t.eos = c.eos;
  t.pad = c.pad;
  t.eos_ids = {c.eos};
  t.vocab = std::max({c.bos, c.eos, c.pad, 255}) + 1;
  return t;
}

// A token named in tokenizer_config.json: "<s>", or {"content": "<s>", ...}; -2 when absent.
static int config_token(const json& j, const char* key, const Bpe& b, const std::string& what) {
  if (!j.contains(key) || j[key].is_null()) return -2;
  const json& v = j[key];
  std::string s = v.is_string() ? v.get<std::string>()
                  : v.is_object() && v.contains("content") && v["content"].is_string()
                      ? v["content"].get<std::string>() : std::string();
  TOPK_CHECK(!s.empty(), "%s: '%s' must be a token string or {\"content\": ...}", what.c_str(), key);
  int id = bpe_token_id(b, s);
  TOPK_CHECK(id >= 0, "%s: %s '%s' is not a token of tokenizer.json", what.c_str(), key, s.c_str());
  return id;
}

Tokenizer tokenizer_from_json(const std::string& text, const std::string& what,
                              const std::string& config_text) {
  auto b = std::make_shared<Bpe>(bpe_from_json(text, what));
  Tokenizer t;
  t.kind = Tokenizer::Kind::bpe;
  t.vocab = b->size;
  t.name = "tokenizer.json (BPE, " + std::to_string(b->size) + " ids)";
  // BOS: what the post-processor's template puts before the text ("<|begin_of_text|> $A" for
  // Llama-3; nothing for GPT-2 and Qwen2), unless tokenizer_config.json says add_bos_token.
  TOPK_CHECK(b->prefix.size() <= 1, "%s: the post-processor puts %zu tokens before the text; topk "
             "prepends at most one (BOS)", what.c_str(), b->prefix.size());
  t.bos = b->prefix.empty() ? -1 : b->prefix[0];
  if (!config_text.empty()) {
    std::string cw = what + " (tokenizer_config.json)";
    json c = parse_json(config_text, cw);
    TOPK_CHECK(c.is_object(), "%s: must be a JSON object", cw.c_str());
    int bos = config_token(c, "bos_token", *b, cw), eos = config_token(c, "eos_token", *b, cw),
        pad = config_token(c, "pad_token", *b, cw);
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) {
      bool add = c["add_bos_token"].get<bool>();
      TOPK_CHECK(!add || bos >= 0, "%s: add_bos_token is true but there is no bos_token", cw.c_str());
      t.bos = add ? bos : -1;
    }
    if (eos >= 0) t.eos = eos;
    if (pad >= 0) t.pad = pad;
  }
  if (t.eos >= 0) t.eos_ids.push_back(t.eos);
  t.bpe = std::move(b);
  return t;
}

Tokenizer tokenizer_load(const std::string& dir, const ModelConfig& cfg) {
  std::string path = dir + "/tokenizer.json";
  if (!file_exists(path)) return tokenizer_bytes(cfg.tokenizer);
  std::string conf = dir + "/tokenizer_config.json";
  Tokenizer t = tokenizer_from_json(read_file(path), path, file_exists(conf) ? read_file(conf) : "");
  TOPK_CHECK(t.vocab <= cfg.vocab, "%s has ids up to %d, past the model's vocab_size %d",
             path.c_str(), t.vocab - 1, cfg.vocab);
  // config.json's ids fill in what tokenizer_config.json did not say.
  if (t.eos < 0) t.eos = cfg.eos;
  if (t.pad < 0) t.pad = cfg.pad;
  if (t.eos_ids.empty() && t.eos >= 0) t.eos_ids.push_back(t.eos);
  for (int e : cfg.eos_ids)
    if (std::find(t.eos_ids.begin(), t.eos_ids.end(), e) == t.eos_ids.end()) t.eos_ids.push_back(e);
  return t;
}

Tokenizer tokenizer_load(const std::string& dir) {
  if (file_exists(dir + "/config.json")) return tokenizer_load(dir, load_config(dir));
  std::string path = dir + "/tokenizer.json", conf = dir + "/tokenizer_config.json";
  if (!file_exists(path)) return tokenizer_bytes(TokenizerConfig{});
  return tokenizer_from_json(read_file(path), path, file_exists(conf) ? read_file(conf) : "");
}

std::vector<int> encode(const Tokenizer& t, std::string_view text, bool add_bos, bool special,
                        std::vector<int64_t>* starts) {
  TOPK_CHECK(t.kind != Tokenizer::Kind::none, "%s", kNoTokenizer);
  std::vector<int> ids;
  if (starts) starts->clear();
  if (add_bos && t.bos >= 0) {
    ids.push_back(t.bos);
    if (starts) starts->push_back(-1);
  }
  if (t.kind == Tokenizer::Kind::bytes) {
    ids.reserve(ids.size() + text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      ids.push_back(int(static_cast<unsigned char>(text[i])));
      if (starts) starts->push_back(int64_t(i));
    }
    return ids;
  }
  bpe_encode(*t.bpe, text, special, ids, starts);
  return ids;
}

std::vector<int> encode(const Tokenizer& t, std::string_view text, bool add_bos, bool special) {
  return encode(t, text, add_bos, special, nullptr);
}

std::string decode(const Tokenizer& t, const std::vector<int>& ids, bool skip_special) {
  TOPK_CHECK(t.kind != Tokenizer::Kind::none, "decode: this checkpoint has no tokenizer (no "
             "tokenizer.json, and no \"topk_tokenizer\" in its config.json)");
  if (t.kind == Tokenizer::Kind::bytes) {
    std::string s;
    for (int id : ids)
      if (id >= 0 && id < 256) s += char(id);
    return s;
  }
  return bpe_decode(*t.bpe, ids.data(), ids.size(), skip_special);
}

std::string token_bytes(const Tokenizer& t, int id) {
  if (t.kind == Tokenizer::Kind::bytes) return id >= 0 && id < 256 ? std::string(1, char(id)) : "";
  if (t.kind != Tokenizer::Kind::bpe || id < 0 || id >= t.bpe->size) return "";
  return t.bpe->piece[size_t(id)];
}

tasks::Tokenizer task_tokenizer(const Tokenizer& t) {
  tasks::Tokenizer r;
  r.name = t.name;
  r.n_bos = t.bos >= 0 ? 1 : 0;
  r.byte_level = t.kind == Tokenizer::Kind::bytes;
  r.encode = [t](std::string_view s) { return encode(t, s, true); };
  if (t.kind == Tokenizer::Kind::bpe)
    r.starts = [t](std::string_view s) {
      std::vector<int64_t> st;
      encode(t, s, true, false, &st);
      return st;
    };
  return r;
}

// ---- topk's byte tokenizer on its config, as before ------------------------------------------

std::vector<int> tok_encode(const TokenizerConfig& t, const std::string& text, bool add_bos) {
  TOPK_CHECK(t.present, "this checkpoint has no topk byte tokenizer (no \"topk_tokenizer\" in its "
             "config.json); pass token ids instead of text");
  std::vector<int> ids;
  if (add_bos) ids.push_back(t.bos);
  for (unsigned char ch : text) ids.push_back(int(ch));
  return ids;
}

std::string tok_piece(const TokenizerConfig& t, int id) {
  return id >= 0 && id < 256 ? std::string(1, char(id)) : std::string();
}

std::string tok_decode(const TokenizerConfig& t, const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += tok_piece(t, id);
  return s;
}

}  // namespace topk
