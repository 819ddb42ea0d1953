// The compiled form of a Regex (regex.h): character classes and a program for a backtracking
// machine. Shared by the compiler (regex.cpp) and the matcher (regex_vm.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/regex.h"
#include "core/unicode.h"

namespace topk::regex_detail {

// Case folding as far as the supported (?i) goes: ASCII letters, and the two non-ASCII
// characters whose simple case folding is an ASCII letter (U+017F long s, U+212A Kelvin sign).
inline char32_t fold(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c | 0x20 : c;
  return c == 0x17F ? U's' : c == 0x212A ? U'k' : c;
}

// The general-category mask of a \p{...} name (short or long, any case; spaces, '_' and '-'
// ignored, as Oniguruma does); 0 when the name is not a general category.
uint32_t category_mask(const std::string& name);

struct ClassItem {
  enum Kind : uint8_t { range, cats, space } kind = range;
  bool neg = false;  // \S, \W, \D, \P{..}
  char32_t lo = 0, hi = 0;
  uint32_t mask = 0;
  bool test(char32_t c) const {
    bool r = kind == range ? (c >= lo && c <= hi)
           : kind == cats  ? unicode::in(mask, c)
                           : unicode::is_space(c);
    return r != neg;
  }
};

struct CharClass {
  std::vector<ClassItem> items;
  bool neg = false, icase = false;
  uint64_t ascii[2] = {0, 0};  // the answer for every c < 128, filled once

  bool raw(char32_t c) const {
    for (const ClassItem& it : items)
      if (it.test(c)) return true;
    return false;
  }
  bool eval_slow(char32_t c) const {
    bool in = raw(c);
    if (!in && icase) {  // some member of c's case closure is in the class
      char32_t f = fold(c);
      if (f >= 'a' && f <= 'z') {
        in = raw(f) || raw(f - 32) || (f == 's' && raw(0x17F)) || (f == 'k' && raw(0x212A));
      }
    }
    return in != neg;
  }
  bool match(char32_t c) const {
    if (c < 128) return (ascii[c >> 6] >> (c & 63)) & 1;
    return eval_slow(c);
  }
};

enum class Op : uint8_t {
  chr, chari, cls, any,          // one character: exact, ASCII-folded, class, any but '\n'
  split, jmp, match,             // split: try x, then y
  star,                          // a repeat of one character (body) min..max times
  look, nlook, atomic,           // sub-program at x: (?=...), (?!...), (?>...)
  bol, eol, bos, eos, eosnl,     // ^ $ \A \z \Z
};
enum class Greed : uint8_t { greedy, lazy, possessive };

// The characters a branch can begin with, to skip a split's first branch without a backtrack
// entry when the next character rules it out. ASCII exactly; any non-ASCII character is "maybe".
struct First {
  uint64_t ascii[2] = {~uint64_t(0), ~uint64_t(0)};
  bool nullable = true;  // the branch may match empty: never skipped
  bool excludes(const char32_t* s, uint32_t pos, uint32_t n) const {
    if (nullable) return false;
    if (pos == n) return true;
    char32_t c = s[pos];
    return c < 128 && !((ascii[c >> 6] >> (c & 63)) & 1);
  }
};

struct Inst {
  Op op = Op::match;
  Op body = Op::any;  // star: chr, chari, cls or any
  Greed greed = Greed::greedy;
  char32_t c = 0;     // chr, chari (folded), star body
  int x = 0, y = 0;   // jump targets; cls: class index
  int min = 0, max = 0;  // star; max < 0: no limit
  First first;        // split: of branch x
};

}  // namespace topk::regex_detail

namespace topk {
struct RegexProgram {
  std::string pattern;
  std::vector<regex_detail::CharClass> classes;
  std::vector<regex_detail::Inst> code;  // starts at 0; sub-programs follow the main one
};
}  // namespace topk
