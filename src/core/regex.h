// A small backtracking regex engine for tokenizer pre-tokenizer patterns (GPT-2's, Llama-3's,
// Qwen2's and their relatives), written to give the matches Oniguruma gives, which is what the
// Hugging Face tokenizers library runs them with. std::regex has no \p{L}, so it cannot.
//
// Supported (Oniguruma syntax over UTF-8 code points): literals, `.`, classes [...] with ranges
// and negation, \s \S \d \D (Unicode, as Oniguruma defines them), \p{..} \P{..} \p{^..}
// for general categories (L, Lu, Ll, Lt, Lm, Lo, M, Mn, ..., N, Nd, Nl, No, P.., S.., Z.., C..,
// and their long names), escapes \t \n \r \f \v \a \e \xHH \x{H..} \uHHHH, groups (...) (?:...),
// case-insensitive groups (?i:...) and (?i) over ASCII letters (plus the two non-ASCII characters
// that fold to ASCII letters, U+017F and U+212A), lookahead (?=...) (?!...), atomic groups
// (?>...), quantifiers ? * + {n} {n,} {n,m} {,m} with lazy (?) and possessive (+) forms, and the
// anchors ^ $ (line), \A \z \Z. Anything else (\w, lookbehind, backreferences, \b, nested or set-
// operation classes, POSIX brackets, non-ASCII letters under (?i)) is refused with a topk::Error
// naming it, never matched differently.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace topk {

struct RegexProgram;

class Regex {
 public:
  Regex() = default;
  explicit Regex(std::string_view pattern);  // raises topk::Error for what is not supported

  // Non-overlapping leftmost matches as [begin, end) byte offsets, in the order the Rust onig
  // crate's find_iter yields them (so also its rule for empty matches: one directly after a
  // non-empty match is skipped). Appends to out.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const;

 private:
  std::shared_ptr<const RegexProgram> prog_;
};

}  // namespace topk
