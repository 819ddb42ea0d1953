// Unicode for the tokenizer: UTF-8 decoding, general categories (for \p{L}, \p{N} ... in
// pre-tokenizer patterns), Oniguruma's \s, and NFC normalization. The tables are generated
// from Python's unicodedata by tools/gen_unicode_tables.py (src/core/unicode_data.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace topk::unicode {

// General categories; Cn (unassigned) is 0.
enum Cat : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po,
  Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co, kNumCats
};
constexpr uint32_t bit(Cat c) { return 1u << c; }
constexpr uint32_t kLetter = bit(Lu) | bit(Ll) | bit(Lt) | bit(Lm) | bit(Lo);
constexpr uint32_t kMark = bit(Mn) | bit(Mc) | bit(Me);
constexpr uint32_t kNumber = bit(Nd) | bit(Nl) | bit(No);
constexpr uint32_t kPunct = bit(Pc) | bit(Pd) | bit(Ps) | bit(Pe) | bit(Pi) | bit(Pf) | bit(Po);
constexpr uint32_t kSymbol = bit(Sm) | bit(Sc) | bit(Sk) | bit(So);
constexpr uint32_t kSeparator = bit(Zs) | bit(Zl) | bit(Zp);
constexpr uint32_t kOther = bit(Cn) | bit(Cc) | bit(Cf) | bit(Cs) | bit(Co);

// A byte that does not start a valid UTF-8 sequence decodes to kInvalid + that byte: one
// "character" of category Cn, so malformed input still splits and encodes byte by byte.
constexpr char32_t kInvalid = 0x110000;

// Decodes the character at s[i] (i < s.size()); *len gets its length in bytes (1..4).
// Overlong forms, surrogates and values past U+10FFFF are invalid.
char32_t decode(std::string_view s, size_t i, int* len);
void append_utf8(std::string& out, char32_t c);

Cat category(char32_t c);  // Cn for unassigned and invalid
inline bool in(uint32_t mask, char32_t c) { return (mask >> category(c)) & 1u; }
// Oniguruma's \s in UTF-8 mode (and Rust's char::is_whitespace): the White_Space property.
bool is_space(char32_t c);
int combining_class(char32_t c);
const char* version();  // Unicode version of the tables, e.g. "14.0.0"

// NFC. With map, (*map)[i] is the byte offset in s of the text that normalized byte i came
// from (map gets out.size() + 1 entries, the last being s.size()); a run of characters that
// normalization changed maps, as a whole, to where that run starts in s.
std::string nfc(std::string_view s, std::vector<int64_t>* map = nullptr);

namespace detail {
struct CatRange { char32_t lo, hi; uint8_t cat; };
struct CccRange { char32_t lo, hi; uint8_t ccc; };
struct Decomp { char32_t cp, first, second; };  // second = 0: a singleton
struct Comp { char32_t first, second, composite; };
extern const char* const kVersion;
extern const CatRange kCategories[];
extern const size_t kCategoriesSize;
extern const CccRange kCombining[];
extern const size_t kCombiningSize;
extern const Decomp kDecompositions[];
extern const size_t kDecompositionsSize;
extern const Comp kCompositions[];
extern const size_t kCompositionsSize;
}  // namespace detail

}  // namespace topk::unicode
