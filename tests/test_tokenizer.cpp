// The tokenizer on small tokenizer.json files built here, with every expected id worked out by
// hand from the merge ranks (comments show the work), and topk's byte tokenizer.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <unistd.h>

#include "core/json.h"
#include "model/bpe.h"
#include "model/tokenizer.h"
#include "topk/core.h"

using namespace topk;
using V = std::vector<int>;

namespace {

// GPT-2's byte alphabet: printable bytes are themselves, the rest U+0100 + n in byte order.
std::string byte_char(int b) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int x = 0; x < 256; ++x) {
      bool printable = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
      char32_t c = printable ? char32_t(x) : char32_t(256 + n++);
      std::string s;
      if (c < 0x80) s += char(c);
      else { s += char(0xC0 | (c >> 6)); s += char(0x80 | (c & 0x3F)); }
      t[size_t(x)] = s;
    }
    return t;
  }();
  return table[size_t(b)];
}
const std::string G = byte_char(' ');  // "Ġ"

// Vocabulary: byte b has id b; then the merges' results 256.. in rank order:
//   256 Ġt  257 he  258 Ġthe  259 ab  260 abc  261 bc  262 ll  263 's  264 12  265 ĠĠ
json base_model(bool pair_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  std::vector<std::pair<std::string, std::string>> merges = {
      {G, "t"}, {"h", "e"}, {G + "t", "he"}, {"a", "b"}, {"ab", "c"},
      {"b", "c"}, {"l", "l"}, {"'", "s"}, {"1", "2"}, {G, G}};
  json m = json::array();
  int id = 256;
  for (auto& [a, b] : merges) {
    vocab[a + b] = id++;
    if (pair_merges) m.push_back(json::array({a, b}));
    else m.push_back(a + " " + b);
  }
  return {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
          {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
          {"vocab", vocab}, {"merges", m}};
}

json added(int id, const std::string& content, bool special, bool lstrip = false, bool rstrip = false) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", !special}, {"special", special}};
}

// GPT-2 style: ByteLevel pre-tokenizer with its own regex, no prefix space.
json gpt2_json(bool pair_merges = false) {
  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = json::array({added(266, "<|endoftext|>", true), added(267, "<tool>", false),
                                   added(268, "<sep>", false, true, true)});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                         {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = base_model(pair_merges);
  return j;
}

const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Llama-3 style: Split(regex) then ByteLevel without its regex, ignore_merges, a BOS template,
// and one vocabulary entry (266 "Ġworld") that no merge reaches.
json llama3_json() {
  json j = gpt2_json(true);
  j["model"]["ignore_merges"] = true;
  j["model"]["vocab"][G + "world"] = 266;
  j["added_tokens"] = json::array({added(267, "<|begin_of_text|>", true), added(268, "<|eot_id|>", true)});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({
      {{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}})}};
  j["post_processor"] = {{"type", "Sequence"}, {"processors", json::array({
      {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
      {{"type", "TemplateProcessing"},
       {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
       {"pair", json::array()},
       {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {267}},
                                                   {"tokens", {"<|begin_of_text|>"}}}}}}}})}};
  return j;
}

Tokenizer load(const json& j, const std::string& config = "") {
  return tokenizer_from_json(j.dump(), "test tokenizer.json", config);
}

// ids of each byte of s (no merges apply)
V bytes(const std::string& s) {
  V v;
  for (unsigned char c : s) v.push_back(int(c));
  return v;
}
V cat(std::initializer_list<V> parts) {
  V v;
  for (const V& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

}  // namespace

TEST(Tokenizer, Gpt2MergesByRank) {
  Tokenizer t = load(gpt2_json());
  EXPECT_EQ(t.kind, Tokenizer::Kind::bpe);
  EXPECT_EQ(t.vocab, 269);
  EXPECT_EQ(t.bos, -1);  // GPT-2's post-processor adds nothing
  EXPECT_EQ(encode(t, "", false), V{});
  EXPECT_EQ(encode(t, "", true), V{});
  // t h e: only (h,e) merges -> t he
  EXPECT_EQ(encode(t, "the", false), (V{'t', 257}));
  // Ġ t h e: (Ġ,t) rank 0 first -> Ġt h e; (h,e) rank 1 -> Ġt he; (Ġt,he) rank 2 -> Ġthe
  EXPECT_EQ(encode(t, " the", false), V{258});
  // a b c: (a,b) rank 3 before (b,c) rank 5 -> ab c; (ab,c) rank 4 -> abc
  EXPECT_EQ(encode(t, "abc", false), V{260});
  // x a b c b c: (a,b)@1 -> x ab c b c; (ab,c) -> x abc b c; the stale (b,c)@2 is dropped;
  // (b,c)@4 -> x abc bc
  EXPECT_EQ(encode(t, "xabcbc", false), (V{'x', 260, 261}));
  // h e l l o: (h,e) rank 1, (l,l) rank 6 -> he ll o
  EXPECT_EQ(encode(t, "hello", false), (V{257, 262, 'o'}));
  // GPT-2's regex: "it" "'s"; contractions are case-sensitive there: "IT" "'" "S"
  EXPECT_EQ(encode(t, "it's", false), (V{'i', 't', 263}));
  EXPECT_EQ(encode(t, "IT'S", false), (V{'I', 'T', '\'', 'S'}));
  // digits are one word: 1 2 3 4 5 -> 12 3 4 5
  EXPECT_EQ(encode(t, "12345", false), (V{264, '3', '4', '5'}));
}

TEST(Tokenizer, Gpt2WhitespaceAndBytes) {
  Tokenizer t = load(gpt2_json());
  // "a  b": \s+(?!\S) takes one space (the second one starts " b") -> "a" " " " b"
  EXPECT_EQ(encode(t, "a  b", false), (V{'a', ' ', ' ', 'b'}));
  // trailing "   ": one word; (Ġ,Ġ)@0 -> ĠĠ Ġ; the stale (Ġ,Ġ)@1 is dropped
  EXPECT_EQ(encode(t, "a   ", false), (V{'a', 265, ' '}));
  EXPECT_EQ(encode(t, "\n", false), V{'\n'});
  // multi-byte UTF-8 falls back to the byte tokens of the ByteLevel alphabet
  EXPECT_EQ(encode(t, "\xC3\xA9", false), (V{0xC3, 0xA9}));
  EXPECT_EQ(encode(t, "\xF0\x9F\x98\x80", false), (V{0xF0, 0x9F, 0x98, 0x80}));
  // invalid UTF-8 still encodes byte by byte
  EXPECT_EQ(encode(t, "a\xFF", false), (V{'a', 0xFF}));
}

TEST(Tokenizer, MergeFormats) {
  Tokenizer a = load(gpt2_json(false)), b = load(gpt2_json(true));
  for (const char* s : {" the abc xabcbc hello it's 12345", "a   b\n\n c", ""})
    EXPECT_EQ(encode(a, s, false), encode(b, s, false)) << s;
}

TEST(Tokenizer, AddedAndSpecialTokens) {
  Tokenizer t = load(gpt2_json());
  // special tokens are plain text unless asked: "a" "<|" "endoftext" "|>" "b"
  EXPECT_EQ(encode(t, "a<|endoftext|>b", false),
            cat({V{'a'}, bytes("<|"), bytes("endoftext"), bytes("|>"), V{'b'}}));
  EXPECT_EQ(encode(t, "a<|endoftext|>b", false, true), (V{'a', 266, 'b'}));
  // a non-special added token always matches
  EXPECT_EQ(encode(t, "x<tool>y", false), (V{'x', 267, 'y'}));
  // lstrip + rstrip: the spaces around "<sep>" belong to it
  std::vector<int64_t> st;
  EXPECT_EQ(encode(t, "a <sep> b", false, false, &st), (V{'a', 268, 'b'}));
  EXPECT_EQ(st, (std::vector<int64_t>{0, 1, 8}));
  EXPECT_EQ(decode(t, {'a', 266, 'b'}), "a<|endoftext|>b");
  EXPECT_EQ(decode(t, {'a', 266, 'b'}, true), "ab");
  EXPECT_EQ(decode(t, {267}, true), "<tool>");  // not special: kept
}

TEST(Tokenizer, Decode) {
  Tokenizer t = load(gpt2_json());
  EXPECT_EQ(decode(t, {258, 260, ' ', 265}), " theabc   ");
  EXPECT_EQ(decode(t, {0xC3, 0xA9}), "\xC3\xA9");
  EXPECT_EQ(decode(t, {0xC3}), "\xEF\xBF\xBD");  // a cut character becomes U+FFFD
  EXPECT_EQ(decode(t, {'a', 9999, -1, 'b'}), "ab");  // unknown ids are skipped
  EXPECT_EQ(token_bytes(t, 258), " the");
  EXPECT_EQ(token_bytes(t, 0xC3), "\xC3");
  EXPECT_EQ(token_bytes(t, 9999), "");
  for (const char* s : {"Hello, world! It's 2024.\n\tNew line  end   ", "\xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80!", ""})
    EXPECT_EQ(decode(t, encode(t, s, false)), s);
}

TEST(Tokenizer, StartsAreExact) {
  Tokenizer t = load(gpt2_json());
  std::string s = "The  cat's 12345 hats\n\n   \xE4\xB8\xAD\xE6\x96\x87 abcbc<tool>!";
  std::vector<int64_t> st;
  V ids = encode(t, s, false, false, &st);
  ASSERT_EQ(st.size(), ids.size());
  int64_t at = 0;
  for (size_t i = 0; i < ids.size(); ++i) {  // each token starts where the previous one ends
    EXPECT_EQ(st[i], at) << i;
    at += int64_t(token_bytes(t, ids[i]).size());
  }
  EXPECT_EQ(at, int64_t(s.size()));
}

TEST(Tokenizer, Llama3Style) {
  Tokenizer t = load(llama3_json());
  EXPECT_EQ(t.bos, 267);  // from the TemplateProcessing
  // "I" "'M" " " "123" "45" " you" "'RE": case-insensitive contractions, digits by three
  EXPECT_EQ(encode(t, "I'M 12345 you'RE", false),
            cat({V{'I'}, bytes("'M"), V{' '}, V{264, '3'}, bytes("45"), bytes(" you"), bytes("'RE")}));
  EXPECT_EQ(encode(t, "it's", true), (V{267, 'i', 't', 263}));
  // ignore_merges: a word in the vocabulary is taken whole, merges or not
  EXPECT_EQ(encode(t, " world", false), V{266});
  EXPECT_EQ(encode(t, "world", false), bytes("world"));
  // "hello" "\n\n" "world": \s*[\r\n]+ keeps the newlines together
  EXPECT_EQ(encode(t, "hello\n\nworld", false), cat({V{257, 262, 'o'}, V{'\n', '\n'}, bytes("world")}));
  // "<|" "eot" "_id" "|>" as text; one token when asked
  EXPECT_EQ(encode(t, "<|eot_id|>", false), cat({bytes("<|"), bytes("eot"), bytes("_id"), bytes("|>")}));
  EXPECT_EQ(encode(t, "<|eot_id|>", false, true), V{268});
  std::vector<int64_t> st;
  EXPECT_EQ(encode(t, "ab", true, false, &st), (V{267, 259}));
  EXPECT_EQ(st, (std::vector<int64_t>{-1, 0}));
}

TEST(Tokenizer, NfcNormalizer) {
  json j = llama3_json();
  j["normalizer"] = {{"type", "NFC"}};
  Tokenizer t = load(j);
  std::vector<int64_t> st;
  // e + combining acute is normalized to é (C3 A9) before it is split and merged
  EXPECT_EQ(encode(t, "e\xCC\x81", false, false, &st), (V{0xC3, 0xA9}));
  EXPECT_EQ(st, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(encode(t, "abc", false), V{260});
}

TEST(Tokenizer, TokenizerConfigIds) {
  std::string conf = R"({"bos_token": {"content": "<|begin_of_text|>", "lstrip": false},
                         "eos_token": "<|eot_id|>", "pad_token": null, "add_bos_token": false})";
  Tokenizer t = load(llama3_json(), conf);
  EXPECT_EQ(t.bos, -1);  // add_bos_token: false wins over the template
  EXPECT_EQ(t.eos, 268);
  EXPECT_EQ(t.eos_ids, V{268});
  EXPECT_EQ(t.pad, -1);
  EXPECT_THROW(load(llama3_json(), R"({"eos_token": "<nope>"})"), Error);
}

TEST(Tokenizer, RefusesWhatItDoesNotImplement) {
  auto refused = [](json j, const char* word) {
    try {
      load(j);
      ADD_FAILURE() << "accepted a tokenizer with " << word;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  json j = gpt2_json();
  j["model"]["type"] = "WordPiece";
  refused(j, "WordPiece");
  j = gpt2_json();
  j["model"]["type"] = "Unigram";
  refused(j, "Unigram");
  j = gpt2_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  refused(j, "Lowercase");
  j = gpt2_json();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  refused(j, "Metaspace");
  j = gpt2_json();
  j["model"]["dropout"] = 0.1;
  refused(j, "dropout");
  j = gpt2_json();
  j["model"]["merges"].push_back("a b c");
  refused(j, "merge 11");
  j = gpt2_json();
  j["model"]["merges"].push_back("zz q");
  refused(j, "not in the vocabulary");
  j = gpt2_json();
  j["decoder"] = {{"type", "WordPiece"}};
  refused(j, "decoder 'WordPiece'");
  j = llama3_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(?<=x)y";
  refused(j, "lookbehind");
}

TEST(Tokenizer, ByteTokenizerUnchanged) {
  TokenizerConfig c;
  c.present = true;
  Tokenizer t = tokenizer_bytes(c);
  std::string s = "any bytes \xFF\x00 at all";
  s.push_back('\0');
  EXPECT_EQ(encode(t, s, true), tok_encode(c, s, true));
  EXPECT_EQ(encode(t, s, false), tok_encode(c, s, false));
  V ids = tok_encode(c, s, true);
  ids.push_back(c.eos);
  EXPECT_EQ(decode(t, ids), tok_decode(c, ids));
  EXPECT_EQ(t.bos, 256);
  EXPECT_EQ(t.eos_ids, V{257});
  tasks::Tokenizer tt = task_tokenizer(t);
  EXPECT_TRUE(tt.byte_level);
  EXPECT_EQ(tt.encode("ab"), tasks::byte_tokenizer().encode("ab"));
  Tokenizer none = tokenizer_bytes(TokenizerConfig{});
  EXPECT_FALSE(none.has_text());
  EXPECT_THROW(encode(none, "a", false), Error);
}

TEST(Tokenizer, LoadFolders) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("topk_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  write_file_atomic((dir / "tokenizer.json").string(), llama3_json().dump());
  Tokenizer t = tokenizer_load(dir.string());  // no config.json: the tokenizer alone
  EXPECT_EQ(t.kind, Tokenizer::Kind::bpe);
  ModelConfig cfg;
  cfg.vocab = 300;
  cfg.eos = 268;
  cfg.eos_ids = {268, 5};
  cfg.pad = 0;
  Tokenizer u = tokenizer_load(dir.string(), cfg);
  EXPECT_EQ(u.eos, 268);
  EXPECT_EQ(u.eos_ids, (V{268, 5}));
  EXPECT_EQ(u.pad, 0);
  cfg.vocab = 100;  // smaller than the tokenizer's ids
  EXPECT_THROW(tokenizer_load(dir.string(), cfg), Error);
  fs::remove(dir / "tokenizer.json");
  cfg.vocab = 300;
  cfg.tokenizer.present = true;
  EXPECT_EQ(tokenizer_load(dir.string(), cfg).kind, Tokenizer::Kind::bytes);
  cfg.tokenizer.present = false;
  EXPECT_EQ(tokenizer_load(dir.string(), cfg).kind, Tokenizer::Kind::none);
  fs::remove_all(dir);
}

TEST(Tokenizer, TaskTokenizerPositions) {
  Tokenizer t = load(llama3_json());
  tasks::Tokenizer tt = task_tokenizer(t);
  EXPECT_FALSE(tt.byte_level);
  EXPECT_EQ(tt.n_bos, 1);
  tasks::Config cfg;
  cfg.seed = 3;
  cfg.length = tasks::min_length("niah_single_1", tt, cfg.seed) + 40;
  tasks::Example e = tasks::generate("niah_single_1", cfg, tt);
  std::string full = e.prompt + e.answer_prefix;
  std::vector<int64_t> st;
  V ids = encode(t, full, true, false, &st);
  EXPECT_EQ(int64_t(ids.size()), e.prompt_tokens);
  ASSERT_FALSE(e.needles.empty());
  for (const tasks::Needle& n : e.needles) {  // the needle's first byte lies in token_begin
    ASSERT_LT(n.token_begin, int64_t(st.size()));
    EXPECT_LE(st[size_t(n.token_begin)], n.char_begin);
    if (n.token_begin + 1 < int64_t(st.size())) {
      EXPECT_GT(st[size_t(n.token_begin) + 1], n.char_begin);
    }
  }
}

// Encode speed on a generated text of English-like words, numbers, code and CJK (a small
// vocabulary: the pre-tokenizer and the merge loop dominate, as they do for a large one).
TEST(Tokenizer, EncodeSpeed) {
  Tokenizer t = load(llama3_json());
  std::string text;
  const char* parts[] = {"The quick brown fox jumps over the lazy dog. ", "It's 12345 o'clock; ",
                         "for (int i = 0; i < n; ++i) { x[i] += y[i]; }\n", "\xE4\xB8\xAD\xE6\x96\x87 ",
                         "hello world abcbc   \n\n"};
  for (int i = 0; text.size() < (1 << 20); ++i) text += parts[(i * 7) % 5];
  auto t0 = std::chrono::steady_clock::now();
  V ids = encode(t, text, true);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("encode: %.1f MB in %.3f s = %.1f MB/s, %zu tokens\n", text.size() / 1e6, s,
              text.size() / 1e6 / s, ids.size());
  EXPECT_EQ(decode(t, ids, true), text);
  EXPECT_LT(s, 5.0);
}
