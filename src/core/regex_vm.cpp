// The matcher of Regex: a backtracking machine over the code points of the text, trying the
// alternatives of a split in order and a greedy repeat longest first, which is how Oniguruma
// (a backtracking engine too) picks its leftmost match.
#include <algorithm>
#include <cctype>

#include "core/regex_impl.h"

namespace topk {
namespace u = unicode;
using namespace regex_detail;

namespace regex_detail {

uint32_t category_mask(const std::string& raw) {
  std::string n;
  for (char c : raw)
    if (c != ' ' && c != '_' && c != '-') n += char(std::tolower(static_cast<unsigned char>(c)));
  struct Name { const char* s; uint32_t mask; };
  static const Name names[] = {
      {"l", u::kLetter}, {"letter", u::kLetter}, {"lu", u::bit(u::Lu)},
      {"uppercaseletter", u::bit(u::Lu)}, {"ll", u::bit(u::Ll)}, {"lowercaseletter", u::bit(u::Ll)},
      {"lt", u::bit(u::Lt)}, {"titlecaseletter", u::bit(u::Lt)}, {"lm", u::bit(u::Lm)},
      {"modifierletter", u::bit(u::Lm)}, {"lo", u::bit(u::Lo)}, {"otherletter", u::bit(u::Lo)},
      {"lc", u::bit(u::Lu) | u::bit(u::Ll) | u::bit(u::Lt)},
      {"casedletter", u::bit(u::Lu) | u::bit(u::Ll) | u::bit(u::Lt)},
      {"m", u::kMark}, {"mark", u::kMark}, {"combiningmark", u::kMark}, {"mn", u::bit(u::Mn)},
      {"nonspacingmark", u::bit(u::Mn)}, {"mc", u::bit(u::Mc)}, {"spacingmark", u::bit(u::Mc)},
      {"me", u::bit(u::Me)}, {"enclosingmark", u::bit(u::Me)},
      {"n", u::kNumber}, {"number", u::kNumber}, {"nd", u::bit(u::Nd)},
      {"decimalnumber", u::bit(u::Nd)}, {"nl", u::bit(u::Nl)}, {"letternumber", u::bit(u::Nl)},
      {"no", u::bit(u::No)}, {"othernumber", u::bit(u::No)},
      {"p", u::kPunct}, {"punctuation", u::kPunct}, {"pc", u::bit(u::Pc)},
      {"connectorpunctuation", u::bit(u::Pc)}, {"pd", u::bit(u::Pd)},
      {"dashpunctuation", u::bit(u::Pd)}, {"ps", u::bit(u::Ps)}, {"openpunctuation", u::bit(u::Ps)},
      {"pe", u::bit(u::Pe)}, {"closepunctuation", u::bit(u::Pe)}, {"pi", u::bit(u::Pi)},
      {"initialpunctuation", u::bit(u::Pi)}, {"pf", u::bit(u::Pf)},
      {"finalpunctuation", u::bit(u::Pf)}, {"po", u::bit(u::Po)}, {"otherpunctuation", u::bit(u::Po)},
      {"s", u::kSymbol}, {"symbol", u::kSymbol}, {"sm", u::bit(u::Sm)}, {"mathsymbol", u::bit(u::Sm)},
      {"sc", u::bit(u::Sc)}, {"currencysymbol", u::bit(u::Sc)}, {"sk", u::bit(u::Sk)},
      {"modifiersymbol", u::bit(u::Sk)}, {"so", u::bit(u::So)}, {"othersymbol", u::bit(u::So)},
      {"z", u::kSeparator}, {"separator", u::kSeparator}, {"zs", u::bit(u::Zs)},
      {"spaceseparator", u::bit(u::Zs)}, {"zl", u::bit(u::Zl)}, {"lineseparator", u::bit(u::Zl)},
      {"zp", u::bit(u::Zp)}, {"paragraphseparator", u::bit(u::Zp)},
      {"c", u::kOther}, {"other", u::kOther}, {"cc", u::bit(u::Cc)}, {"control", u::bit(u::Cc)},
      {"cf", u::bit(u::Cf)}, {"format", u::bit(u::Cf)}, {"cs", u::bit(u::Cs)},
      {"surrogate", u::bit(u::Cs)}, {"co", u::bit(u::Co)}, {"privateuse", u::bit(u::Co)},
      {"cn", u::bit(u::Cn)}, {"unassigned", u::bit(u::Cn)},
  };
  for (const Name& e : names)
    if (n == e.s) return e.mask;
  return 0;
}

}  // namespace regex_detail

namespace {

struct Frame {
  enum Kind : uint8_t { plain, greedy, lazy } kind;
  int pc;
  uint32_t pos, n;  // greedy: positions below pos still to try; lazy: repeats so far
};

struct Machine {
  const RegexProgram& p;
  const char32_t* s;
  uint32_t n;
  std::vector<Frame>& stack;

  bool one(const Inst& in, Op op, char32_t c) const {
    switch (op) {
      case Op::chr: return c == in.c;
      case Op::chari: return fold(c) == in.c;
      case Op::cls: return p.classes[size_t(in.x)].match(c);
      default: return c != '\n';  // any
    }
  }

  // Runs the program from pc at pos; on a match, *end is where it ends.
  bool run(int pc, uint32_t pos, uint32_t* end) {
    const size_t base = stack.size();
    for (;;) {
      const Inst& in = p.code[size_t(pc)];
      bool ok = true;
      switch (in.op) {
        case Op::chr: case Op::chari: case Op::cls: case Op::any:
          ok = pos < n && one(in, in.op, s[pos]);
          if (ok) { ++pos; ++pc; }
          break;
        case Op::split:
          if (in.first.excludes(s, pos, n)) {  // the first branch cannot match here
            pc = in.y;
            break;
          }
          stack.push_back({Frame::plain, in.y, pos, 0});
          pc = in.x;
          break;
        case Op::jmp: pc = in.x; break;
        case Op::match:
          *end = pos;
          stack.resize(base);
          return true;
        case Op::star: {
          uint32_t lim = n - pos;
          if (in.max >= 0) lim = std::min(lim, uint32_t(in.max));
          uint32_t k = 0;
          if (in.greed != Greed::lazy) {
            while (k < lim && one(in, in.body, s[pos + k])) ++k;
            ok = k >= uint32_t(in.min);
            if (ok && k > uint32_t(in.min) && in.greed == Greed::greedy)
              stack.push_back({Frame::greedy, pc + 1, pos + k - 1, k - uint32_t(in.min) - 1});
          } else {
            while (k < uint32_t(in.min) && k < lim && one(in, in.body, s[pos + k])) ++k;
            ok = k == uint32_t(in.min);
            if (ok) stack.push_back({Frame::lazy, pc, pos + k, k});
          }
          if (ok) { pos += k; ++pc; }
          break;
        }
        case Op::look: case Op::nlook: {
          uint32_t e;
          ok = run(in.x, pos, &e) == (in.op == Op::look);
          if (ok) ++pc;
          break;
        }
        case Op::atomic: {
          uint32_t e;
          ok = run(in.x, pos, &e);
          if (ok) { pos = e; ++pc; }
          break;
        }
        case Op::bol: ok = pos == 0 || s[pos - 1] == '\n'; if (ok) ++pc; break;
        case Op::eol: ok = pos == n || s[pos] == '\n'; if (ok) ++pc; break;
        case Op::bos: ok = pos == 0; if (ok) ++pc; break;
        case Op::eos: ok = pos == n; if (ok) ++pc; break;
        case Op::eosnl: ok = pos == n || (pos + 1 == n && s[pos] == '\n'); if (ok) ++pc; break;
      }
      if (ok) continue;
      // Backtrack to the newest choice left.
      for (;;) {
        if (stack.size() == base) return false;
        Frame f = stack.back();
        stack.pop_back();
        if (f.kind == Frame::plain) { pc = f.pc; pos = f.pos; break; }
        if (f.kind == Frame::greedy) {  // give back one more character
          if (f.n > 0) stack.push_back({Frame::greedy, f.pc, f.pos - 1, f.n - 1});
          pc = f.pc;
          pos = f.pos;
          break;
        }
        const Inst& st = p.code[size_t(f.pc)];  // lazy: take one more character
        if ((st.max < 0 || f.n < uint32_t(st.max)) && f.pos < n && one(st, st.body, s[f.pos])) {
          stack.push_back({Frame::lazy, f.pc, f.pos + 1, f.n + 1});
          pc = f.pc + 1;
          pos = f.pos + 1;
          break;
        }
      }
    }
  }
};

}  // namespace

void Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
  if (!prog_) return;
  thread_local std::vector<char32_t> cps;
  thread_local std::vector<uint32_t> offs;  // byte offset of each code point, then text.size()
  thread_local std::vector<Frame> stack;
  cps.clear();
  offs.clear();
  for (size_t i = 0; i < text.size();) {
    int len;
    cps.push_back(u::decode(text, i, &len));
    offs.push_back(uint32_t(i));
    i += size_t(len);
  }
  offs.push_back(uint32_t(text.size()));
  Machine m{*prog_, cps.data(), uint32_t(cps.size()), stack};
  // The Rust onig crate's find_iter: search from the end of the last match; an empty match
  // moves on by one character, and is dropped when it directly follows a non-empty match.
  uint32_t last = 0;
  bool skip_empty = false;
  while (last <= m.n) {
    uint32_t s = last, e = 0;
    bool found = false;
    for (; s <= m.n; ++s)
      if ((found = m.run(0, s, &e))) break;
    if (!found) break;
    last = e;
    if (e == s) {
      ++last;
      if (skip_empty) {
        skip_empty = false;
        continue;
      }
    } else {
      skip_empty = true;
    }
    out.push_back({offs[s], offs[e]});
  }
}

}  // namespace topk
