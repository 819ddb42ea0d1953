// tokenizer.json -> Bpe: the parts topk implements are read, everything else is refused.
#include <algorithm>
#include <cstdio>
#include <map>

#include "core/json.h"
#include "core/unicode.h"
#include "model/bpe.h"
#include "topk/core.h"

namespace topk {

namespace {

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes for
// U+0100 onwards, so every byte string is a string of visible characters.
struct ByteAlphabet {
  std::array<char32_t, 256> chr{};
  std::unordered_map<char32_t, uint8_t> byte;
  ByteAlphabet() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      chr[size_t(b)] = printable ? char32_t(b) : char32_t(256 + n++);
      byte[chr[size_t(b)]] = uint8_t(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

// The bytes a token string stands for when every character is in the alphabet; else false.
bool to_bytes(std::string_view token, std::string& out) {
  out.clear();
  const ByteAlphabet& a = alphabet();
  for (size_t i = 0; i < token.size();) {
    int len;
    char32_t c = unicode::decode(token, i, &len);
    auto it = a.byte.find(c);
    if (it == a.byte.end()) return false;
    out += char(it->second);
    i += size_t(len);
  }
  return true;
}

struct Loader {
  const std::string& what;
  Bpe& b;

  Regex regex(const std::string& pattern) {  // errors name the file too
    try {
      return Regex(pattern);
    } catch (const Error& e) {
      throw Error(what + ": " + e.what());
    }
  }
  [[noreturn]] void refuse(const std::string& msg) {
    throw Error(what + ": " + msg + " (topk reads byte-level BPE tokenizers: GPT-2, Llama-3, "
                "Qwen2 style)");
  }
  std::string type_of(const json& j, const char* part) {
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
      refuse(std::string(part) + " without a \"type\"");
    return j["type"].get<std::string>();
  }
  static bool flag(const json& j, const char* key, bool dflt) {
    return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : dflt;
  }

  void normalizer(const json& j) {
    if (j.is_null()) return;
    std::string t = type_of(j, "normalizer");
    if (t == "NFC") { b.nfc = true; return; }
    if (t == "Sequence") {
      for (const json& k : j.value("normalizers", json::array())) normalizer(k);
      return;
    }
    refuse("normalizer '" + t + "' is not supported (none or NFC)");
  }

  void pre_tokenizer(const json& j) {
    if (j.is_null()) return;
    std::string t = type_of(j, "pre_tokenizer");
    if (t == "Sequence") {
      for (const json& k : j.value("pretokenizers", json::array())) pre_tokenizer(k);
      return;
    }
    BpePreStep s;
    if (t == "ByteLevel") {
      s.kind = BpePreStep::byte_level;
      s.add_prefix_space = flag(j, "add_prefix_space", true);
      s.use_regex = flag(j, "use_regex", true);
      if (s.use_regex)
        s.regex = regex(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
    } else if (t == "Split") {
      const json& p = j.value("pattern", json());
      if (p.contains("Regex") && p["Regex"].is_string()) {
        s.regex = regex(p["Regex"].get<std::string>());
      } else if (p.contains("String") && p["String"].is_string() && !p["String"].get<std::string>().empty()) {
        s.is_regex = false;
        s.literal = p["String"].get<std::string>();
      } else {
        refuse("a Split pre-tokenizer needs a \"pattern\" {\"Regex\": ...} or a non-empty {\"String\": ...}");
      }
      static const std::map<std::string, BpePreStep::Behavior> behaviors = {
          {"Removed", BpePreStep::removed}, {"Isolated", BpePreStep::isolated},
          {"MergedWithPrevious", BpePreStep::merged_with_previous},
          {"MergedWithNext", BpePreStep::merged_with_next}, {"Contiguous", BpePreStep::contiguous}};
      std::string bh = j.value("behavior", "");
      auto it = behaviors.find(bh);
      if (it == behaviors.end()) refuse("Split behavior '" + bh + "' is unknown");
      s.behavior = it->second;
      s.invert = flag(j, "invert", false);
    } else {
      refuse("pre-tokenizer '" + t + "' is not supported (ByteLevel, Split, Sequence)");
    }
    b.pre.push_back(std::move(s));
  }

  void decoder(const json& j) {
    std::string t = j.is_null() ? "null" : type_of(j, "decoder");
    if (t == "Sequence" && j.value("decoders", json::array()).size() == 1) return decoder(j["decoders"][0]);
    if (t != "ByteLevel") refuse("decoder '" + t + "' is not supported (ByteLevel)");
  }

  void post_processor(const json& j, const std::unordered_map<std::string, int32_t>& ids) {
    if (j.is_null()) return;
    std::string t = type_of(j, "post_processor");
    if (t == "ByteLevel") return;  // offsets only
    if (t == "Sequence") {
      for (const json& k : j.value("processors", json::array())) post_processor(k, ids);
      return;
    }
    if (t != "TemplateProcessing") refuse("post_processor '" + t + "' is not supported (ByteLevel, "
                                          "TemplateProcessing)");
    const json& special = j.value("special_tokens", json::object());
    bool after = false;
    b.prefix.clear();
    b.suffix.clear();
    for (const json& item : j.value("single", json::array())) {
      if (item.contains("Sequence")) { after = true; continue; }
      if (!item.contains("SpecialToken")) refuse("a TemplateProcessing item that is neither SpecialToken nor Sequence");
      std::string name = item["SpecialToken"].value("id", "");
      std::vector<int32_t> tok;
      if (special.contains(name) && special[name].contains("ids")) {
        for (const json& id : special[name]["ids"]) tok.push_back(id.get<int32_t>());
      } else {
        auto it = ids.find(name);
        if (it == ids.end()) refuse("TemplateProcessing names '" + name + "', which is not a token");
        tok.push_back(it->second);
      }
      auto& dst = after ? b.suffix : b.prefix;
      dst.insert(dst.end(), tok.begin(), tok.end());
    }
  }

  void model(const json& m, std::unordered_map<std::string, int32_t>& model_vocab) {
    std::string t = m.is_object() && m.contains("type") ? m["type"].get<std::string>() : "BPE";
    if (t != "BPE") refuse("model type '" + t + "' is not supported (BPE)");
    if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0)
      refuse("BPE dropout is not supported (it makes encoding random)");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty())
        refuse(std::string("BPE ") + k + " is not supported");
    b.ignore_merges = flag(m, "ignore_merges", false);
    b.fuse_unk = flag(m, "fuse_unk", false);
    b.byte_fallback = flag(m, "byte_fallback", false);
    if (!m.contains("vocab") || !m["vocab"].is_object() || !m.contains("merges") || !m["merges"].is_array())
      refuse("the BPE model needs \"vocab\" (an object) and \"merges\" (an array)");
    std::string raw;
    for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
      TOPK_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                     it.value().get<int64_t>() < (int64_t(1) << 30),
                 "%s: vocab entry %s has id %s", what.c_str(), json(it.key()).dump().c_str(),
                 it.value().dump().c_str());
      int32_t id = it.value().get<int32_t>();
      model_vocab[it.key()] = id;
      if (to_bytes(it.key(), raw)) b.vocab[raw] = id;
    }
    const ByteAlphabet& a = alphabet();
    for (int x = 0; x < 256; ++x) {
      auto it = b.vocab.find(std::string(1, char(x)));
      b.byte_id[size_t(x)] = it == b.vocab.end() ? -1 : it->second;
      b.byte_char[size_t(x)] = a.chr[size_t(x)];
      b.byte_len[size_t(x)] = uint8_t(a.chr[size_t(x)] < 0x80 ? 1 : 2);
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", x);
      auto f = model_vocab.find(name);
      b.fallback_id[size_t(x)] = f == model_vocab.end() ? -1 : f->second;
    }
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      auto it = model_vocab.find(m["unk_token"].get<std::string>());
      if (it == model_vocab.end()) b.unk_missing = m["unk_token"].get<std::string>();
      else b.unk = it->second;
    }
    merges(m["merges"], model_vocab);
  }

  void merges(const json& list, const std::unordered_map<std::string, int32_t>& v) {
    b.merges.reserve(list.size());
    uint32_t rank = 0;
    std::string left, right;
    for (const json& e : list) {
      if (e.is_string()) {  // "a b" (older files); '#version' lines are skipped, as tokenizers does
        const std::string& s = e.get_ref<const std::string&>();
        if (s.rfind("#version", 0) == 0) continue;
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          refuse("merge " + std::to_string(rank + 1) + " (\"" + s + "\") is not two tokens split by one space");
        left = s.substr(0, sp);
        right = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        left = e[0].get<std::string>();
        right = e[1].get<std::string>();
      } else {
        refuse("merge " + std::to_string(rank + 1) + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      auto ia = v.find(left), ib = v.find(right), im = v.find(left + right);
      if (ia == v.end() || ib == v.end() || im == v.end())
        refuse("merge " + std::to_string(rank + 1) + " (" + left + " + " + right +
               ") uses a token that is not in the vocabulary");
      b.merges.set(ia->second, ib->second, rank, im->second);
      ++rank;
    }
  }

  // tokenizers' AddedVocabulary::add_tokens: an added token takes the id its content already
  // has (added, then model vocabulary), else the next free id; the "id" written in the file is
  // only checked against that by tokenizers, so it is here.
  void added_tokens(const json& list, const std::unordered_map<std::string, int32_t>& model_vocab) {
    int32_t next = int32_t(model_vocab.size());
    std::unordered_map<std::string, size_t> by_content;
    for (const json& e : list) {
      BpeAddedToken t;
      t.content = e.value("content", "");
      if (t.content.empty()) continue;
      t.special = flag(e, "special", false);
      t.single_word = flag(e, "single_word", false);
      t.lstrip = flag(e, "lstrip", false);
      t.rstrip = flag(e, "rstrip", false);
      t.normalized = flag(e, "normalized", !t.special);
      auto prev = by_content.find(t.content);
      auto mv = model_vocab.find(t.content);
      t.id = prev != by_content.end() ? b.added[prev->second].id : mv != model_vocab.end() ? mv->second : next++;
      t.pattern = t.normalized && b.nfc ? unicode::nfc(t.content) : t.content;
      if (prev != by_content.end()) {
        b.added[prev->second] = t;
      } else {
        for (BpeAddedToken& o : b.added)  // a token that takes an id another one had replaces it
          if (o.id == t.id) o.id = -1;
        by_content[t.content] = b.added.size();
        b.added.push_back(t);
      }
    }
    b.added.erase(std::remove_if(b.added.begin(), b.added.end(), [](const BpeAddedToken& t) { return t.id < 0; }),
                  b.added.end());
    for (size_t i = 0; i < b.added.size(); ++i)
      (b.added[i].normalized ? b.norm_trie : b.raw_trie).add(b.added[i].pattern, int32_t(i));
  }

  // Decoding tables: the bytes each id gives (ByteLevel decoder: the token's characters mapped
  // back to bytes when all are in the alphabet, else the token's own UTF-8) and which ids are
  // special (skipped by decode(skip_special)).
  void tables(const std::unordered_map<std::string, int32_t>& model_vocab) {
    std::unordered_map<int32_t, std::string> str;  // id -> token string, added tokens first
    for (const auto& [s, id] : model_vocab) str[id] = s;
    for (const BpeAddedToken& t : b.added) str[t.id] = t.pattern;
    std::unordered_map<std::string, bool> special;
    for (const BpeAddedToken& t : b.added) if (t.special) special[t.content] = true;
    for (const auto& [id, s] : str) b.size = std::max(b.size, id + 1);
    b.piece.assign(size_t(b.size), std::string());
    b.flags.assign(size_t(b.size), 0);
    std::string raw;
    for (const auto& [id, s] : str) {
      b.piece[size_t(id)] = to_bytes(s, raw) ? raw : s;
      b.flags[size_t(id)] = Bpe::kKnown | (special.count(s) ? Bpe::kSpecial : 0);
    }
    b.token_ids = model_vocab;
    for (const BpeAddedToken& t : b.added) b.token_ids[t.content] = t.id;
  }
};

}  // namespace

Bpe bpe_from_json(const std::string& text, const std::string& what) {
  json j = parse_json(text, what);
  TOPK_CHECK(j.is_object() && j.contains("model"), "%s: not a tokenizer.json (no \"model\")", what.c_str());
  Bpe b;
  Loader l{what, b};
  std::unordered_map<std::string, int32_t> model_vocab;
  l.normalizer(j.value("normalizer", json()));
  l.model(j["model"], model_vocab);
  l.pre_tokenizer(j.value("pre_tokenizer", json()));
  bool byte_level = !b.pre.empty() && b.pre.back().kind == BpePreStep::byte_level;
  for (size_t i = 0; i + 1 < b.pre.size(); ++i)
    if (b.pre[i].kind == BpePreStep::byte_level) byte_level = false;
  if (!byte_level) l.refuse("the pre-tokenizer must end in exactly one ByteLevel (this is not byte-level BPE)");
  l.decoder(j.value("decoder", json()));
  l.added_tokens(j.value("added_tokens", json::array()), model_vocab);
  l.tables(model_vocab);
  l.post_processor(j.value("post_processor", json()), b.token_ids);
  return b;
}

int32_t bpe_token_id(const Bpe& b, const std::string& token) {
  auto it = b.token_ids.find(token);
  return it == b.token_ids.end() ? -1 : it->second;
}

}  // namespace topk
