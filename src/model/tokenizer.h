// Text <-> token ids for a model folder.
//
//  - tokenizer.json (Hugging Face, byte-level BPE: GPT-2, Llama-3, Qwen2 ...; model/bpe.h), with
//    bos/eos/pad from tokenizer_config.json and config.json;
//  - else topk's byte tokenizer when config.json has "topk_tokenizer" (ids 0..255 are bytes, then
//    BOS, EOS, PAD; what folders topk writes use);
//  - else none: encode refuses text (pass token ids instead).
//
// A Tokenizer is a cheap value (the tables are shared, immutable, safe across threads).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "tasks/tasks.h"

namespace topk {

struct Bpe;

struct Tokenizer {
  enum class Kind : uint8_t { none, bytes, bpe };
  Kind kind = Kind::none;
  std::string name;          // "none", "bytes", "tokenizer.json (BPE, 2000 ids)"
  int bos = -1;              // what encode(..., add_bos = true) prepends; -1: nothing (GPT-2, Qwen2)
  int eos = -1;              // end of text; -1: unknown
  int pad = -1;              // -1: none
  std::vector<int> eos_ids;  // every id that ends generation (eos first)
  int vocab = 0;             // ids are below this
  std::shared_ptr<const Bpe> bpe;  // kind == bpe

  bool has_text() const { return kind != Kind::none; }
};

// The tokenizer of a model folder (see above). The first form reads dir/config.json itself
// when there is one.
Tokenizer tokenizer_load(const std::string& dir);
Tokenizer tokenizer_load(const std::string& dir, const ModelConfig& cfg);
// topk's byte tokenizer (ids 0..255 bytes; t.bos, t.eos, t.pad); kind none when !t.present.
Tokenizer tokenizer_bytes(const TokenizerConfig& t);
// A tokenizer.json's text (what names it in errors), with optional tokenizer_config.json text.
Tokenizer tokenizer_from_json(const std::string& tokenizer_json, const std::string& what,
                              const std::string& tokenizer_config_json = "");

// The ids of text. add_bos: prepend t.bos (when it has one). special: read special added
// tokens written in the text ("<|eot_id|>") as those tokens; by default they are plain text,
// so text from a file or a prompt cannot smuggle control tokens in. Raises for kind none.
std::vector<int> encode(const Tokenizer& t, std::string_view text, bool add_bos, bool special = false);
// As encode, and starts[i] = the byte offset in text where token i begins (-1 for BOS).
std::vector<int> encode(const Tokenizer& t, std::string_view text, bool add_bos, bool special,
                        std::vector<int64_t>* starts);
// The text of ids; skip_special drops special tokens (BOS, EOS, ...); the byte tokenizer always
// drops its specials. Invalid UTF-8 (a sequence cut mid-character) becomes U+FFFD.
std::string decode(const Tokenizer& t, const std::vector<int>& ids, bool skip_special = false);
// The raw bytes of one token, for streaming output ("" for unknown ids); a character split over
// several tokens comes out whole once all its bytes have.
std::string token_bytes(const Tokenizer& t, int id);

// The same tokenizer as the task generators' callbacks (encode with BOS; exact byte starts).
tasks::Tokenizer task_tokenizer(const Tokenizer& t);

// The byte tokenizer of config.json's topk_tokenizer, unchanged (train/eval/generate use these).
std::vector<int> tok_encode(const TokenizerConfig& t, const std::string& text, bool add_bos);
// Bytes of the ids below 256; special ids are dropped.
std::string tok_decode(const TokenizerConfig& t, const std::vector<int>& ids);
std::string tok_piece(const TokenizerConfig& t, int id);  // one id ("" for specials)

}  // namespace topk
