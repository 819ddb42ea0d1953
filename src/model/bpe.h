// Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama-3, Qwen2 and their relatives):
// the same ids as the `tokenizers` library for the same text, and the same text back.
//
// Encoding, as `tokenizers` does it: (1) added tokens that are not normalized are cut out of
// the text (leftmost-longest, honouring lstrip / rstrip / single_word; special ones only when
// asked); (2) the rest is normalized (none or NFC); (3) normalized added tokens are cut out;
// (4) the pre-tokenizers split what is left into words (Split with a regex or a string, then
// ByteLevel, which may split with GPT-2's regex and add a prefix space); (5) each word's bytes
// are merged by BPE, lowest merge rank first (or taken whole with ignore_merges when the
// vocabulary has the word). Decoding maps each id back to bytes through the ByteLevel
// alphabet (added tokens give their content) and replaces invalid UTF-8 as Rust's
// from_utf8_lossy does.
//
// Anything else in a tokenizer.json (WordPiece, Unigram, normalizers other than NFC,
// pre-tokenizers other than Split/ByteLevel/Sequence, BPE dropout, subword prefixes) is refused
// at load with a topk::Error that names it.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/regex.h"

namespace topk {

// (left id, right id) -> (rank, merged id), open addressing: the merge loop's only lookup.
class PairMap {
 public:
  void reserve(size_t n);
  void set(int32_t a, int32_t b, uint32_t rank, int32_t merged);  // a later set overwrites
  // Packed (rank << 32 | merged id), or kNone.
  uint64_t get(int32_t a, int32_t b) const {
    if (slots_.empty()) return kNone;
    uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.k == k) return s.v;
      if (s.k == kEmpty) return kNone;
    }
  }
  static constexpr uint64_t kNone = ~uint64_t(0);

 private:
  struct Slot { uint64_t k, v; };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }
  static size_t hash(uint64_t k) { return size_t((k * 0x9E3779B97F4A7C15ull) >> 17); }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

// Added tokens, matched leftmost-longest in a byte trie.
struct BpeAddedToken {
  std::string content;  // as written in tokenizer.json
  std::string pattern;  // what is matched: content, or its NFC form when normalized
  int32_t id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};
struct BpeTrie {
  struct Node { int32_t token = -1; std::vector<std::pair<uint8_t, int32_t>> kids; };  // token: index into added
  std::vector<Node> nodes;
  std::array<bool, 256> first{};  // bytes some pattern starts with
  bool empty() const { return nodes.size() <= 1; }
  void add(std::string_view pattern, int32_t token);
};

// One pre-tokenizer, in the order tokenizer.json lists them (Sequence flattened).
struct BpePreStep {
  enum Kind : uint8_t { split, byte_level } kind = split;
  enum Behavior : uint8_t { removed, isolated, merged_with_previous, merged_with_next, contiguous };
  Regex regex;           // split with a Regex pattern; byte_level with use_regex (GPT-2's pattern)
  std::string literal;   // split with a String pattern
  bool is_regex = true;  // split
  Behavior behavior = isolated;
  bool invert = false;
  bool use_regex = true, add_prefix_space = false;  // byte_level
};

struct Bpe {
  // The model over raw bytes: each vocabulary entry whose characters are all in the ByteLevel
  // alphabet, keyed by the bytes those characters stand for.
  std::unordered_map<std::string, int32_t> vocab;
  std::array<int32_t, 256> byte_id{};      // the single-byte token of each byte, -1 if none
  std::array<char32_t, 256> byte_char{};   // the byte's ByteLevel character
  std::array<uint8_t, 256> byte_len{};     // its UTF-8 length
  PairMap merges;
  bool ignore_merges = false, fuse_unk = false, byte_fallback = false;
  int32_t unk = -1;                        // unk_token's id; -1: none (unknown bytes dropped)
  std::string unk_missing;                 // an unk_token that is not in the vocabulary
  std::array<int32_t, 256> fallback_id{};  // byte_fallback: the id of "<0xXX>", -1 if none

  std::vector<BpeAddedToken> added;
  BpeTrie raw_trie, norm_trie;  // added tokens matched before / after normalization
  bool nfc = false;
  std::vector<BpePreStep> pre;
  std::vector<int32_t> prefix, suffix;  // TemplateProcessing ids around the text ($A)

  std::vector<std::string> piece;   // [id] bytes that decoding gives
  std::vector<uint8_t> flags;       // [id] kKnown | kSpecial
  static constexpr uint8_t kKnown = 1, kSpecial = 2;
  std::unordered_map<std::string, int32_t> token_ids;  // token strings (added first) -> id
  int32_t size = 0;  // 1 + the largest id
};

// Parses and checks the text of a tokenizer.json; `what` names it in errors.
Bpe bpe_from_json(const std::string& text, const std::string& what);

// Appends the ids of text (no template tokens). special: match special added tokens in the
// text (otherwise they are plain text, like tokenizers' encode_special_tokens = true).
// starts: for each id, the byte offset in text where its text begins.
void bpe_encode(const Bpe& b, std::string_view text, bool special, std::vector<int32_t>& ids,
                std::vector<int64_t>* starts);
// Ids outside the vocabulary are skipped (as tokenizers does).
std::string bpe_decode(const Bpe& b, const int32_t* ids, size_t n, bool skip_special);
// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);
int32_t bpe_token_id(const Bpe& b, const std::string& token);  // -1 if none

}  // namespace topk
