// Parser and compiler of the regex subset (regex.h); the matcher is in regex_vm.cpp.
#include "core/regex_impl.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "topk/core.h"

namespace topk {
namespace u = unicode;
using namespace regex_detail;

namespace {

struct Node {
  enum Kind : uint8_t { seq, alt, chr, cls, any, rep, look, nlook, atomic, anchor } kind = seq;
  char32_t c = 0;           // chr: the character (folded when icase)
  bool icase = false;       // chr
  int klass = -1;           // cls: index into the program's classes
  int min = 0, max = 0;     // rep (max < 0: no limit)
  Greed greed = Greed::greedy;
  Op anchor_op = Op::bol;   // anchor
  std::vector<Node> kids;
};

bool is_letter_ascii(char32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

class Parser {
 public:
  Parser(std::string_view p, std::vector<CharClass>& classes) : p_(p), classes_(classes) {}

  Node parse() {
    Node n = alt(false);
    if (i_ < p_.size()) fail("unmatched ')'");
    return n;
  }

 private:
  std::string_view p_;
  size_t i_ = 0;
  std::vector<CharClass>& classes_;

  [[noreturn]] void fail(const char* what) {
    throw Error(detail::format_error("pre-tokenizer regex \"%.*s\": %s (at byte %zu); topk supports "
                                     "the Oniguruma subset listed in src/core/regex.h",
                                     int(p_.size()), p_.data(), what, i_));
  }
  bool eat(const char* s) {
    size_t n = std::strlen(s);
    if (p_.substr(i_, n) != s) return false;
    i_ += n;
    return true;
  }
  char32_t next_cp() {
    int len;
    char32_t c = u::decode(p_, i_, &len);
    if (c >= u::kInvalid) fail("the pattern is not valid UTF-8");
    i_ += size_t(len);
    return c;
  }

  // An alternation up to ')' or the end. icase: the flag at the group's start; (?i) inside the
  // group changes it for the rest of the group, across '|' as in Perl and Oniguruma.
  Node alt(bool icase) {
    Node n;
    n.kind = Node::alt;
    n.kids.push_back(seq(icase));
    while (i_ < p_.size() && p_[i_] == '|') {
      ++i_;
      n.kids.push_back(seq(icase));
    }
    if (n.kids.size() == 1) return std::move(n.kids[0]);
    return n;
  }

  Node seq(bool& icase) {
    Node n;
    while (i_ < p_.size() && p_[i_] != '|' && p_[i_] != ')') {
      if (eat("(?i)")) { icase = true; continue; }
      if (eat("(?-i)")) { icase = false; continue; }
      Node a = atom(icase);
      quantifiers(a);
      n.kids.push_back(std::move(a));
    }
    return n;
  }

  bool interval(int* lo, int* hi) {  // {n} {n,} {,m} {n,m}; otherwise '{' is a literal
    size_t j = i_ + 1;
    auto num = [&](int* v) {
      size_t s = j;
      long x = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9' && x <= 100000) x = x * 10 + (p_[j++] - '0');
      *v = int(x);
      return j > s;
    };
    bool has_lo = num(lo);
    if (!has_lo) *lo = 0;
    if (j < p_.size() && p_[j] == '}') {
      if (!has_lo) return false;
      *hi = *lo;
    } else {
      if (j >= p_.size() || p_[j] != ',') return false;
      ++j;
      if (!num(hi)) {
        if (!has_lo) return false;
        *hi = -1;
      }
      if (j >= p_.size() || p_[j] != '}') return false;
    }
    if (*lo > 1000 || *hi > 1000) fail("repeat count above 1000");
    if (*hi >= 0 && *hi < *lo) fail("repeat {n,m} with m < n");
    i_ = j + 1;
    return true;
  }

  void quantifiers(Node& a) {
    for (;;) {
      int lo, hi;
      bool iv = false;
      if (i_ >= p_.size()) return;
      char c = p_[i_];
      if (c == '*') { lo = 0; hi = -1; ++i_; }
      else if (c == '+') { lo = 1; hi = -1; ++i_; }
      else if (c == '?') { lo = 0; hi = 1; ++i_; }
      else if (c == '{' && interval(&lo, &hi)) { iv = true; }
      else return;
      if (a.kind == Node::anchor || a.kind == Node::look || a.kind == Node::nlook)
        fail("a quantifier on an anchor or a lookahead");
      Node r;
      r.kind = Node::rep;
      r.min = lo;
      r.max = hi;
      if (i_ < p_.size() && p_[i_] == '?') { r.greed = Greed::lazy; ++i_; }
      else if (!iv && i_ < p_.size() && p_[i_] == '+') { r.greed = Greed::possessive; ++i_; }
      r.kids.push_back(std::move(a));
      a = std::move(r);
    }
  }

  Node atom(bool icase) {
    Node n;
    char c = p_[i_];
    if (c == '(') return group(icase);
    if (c == '[') {
      ++i_;
      return class_node(bracket(icase));
    }
    if (c == '.') { ++i_; n.kind = Node::any; return n; }
    if (c == '^') { ++i_; n.kind = Node::anchor; n.anchor_op = Op::bol; return n; }
    if (c == '$') { ++i_; n.kind = Node::anchor; n.anchor_op = Op::eol; return n; }
    if (c == '*' || c == '+' || c == '?') fail("nothing to repeat");
    if (c == '\\') {
      ++i_;
      if (i_ >= p_.size()) fail("a trailing backslash");
      char e = p_[i_];
      Op a = e == 'A' ? Op::bos : e == 'z' ? Op::eos : e == 'Z' ? Op::eosnl : Op::match;
      if (a != Op::match) { ++i_; n.kind = Node::anchor; n.anchor_op = a; return n; }
      CharClass k;
      if (class_escape(k)) return class_node(finish(std::move(k), icase));
      return literal(escaped_char(), icase);
    }
    return literal(next_cp(), icase);
  }

  Node literal(char32_t c, bool icase) {
    Node n;
    n.kind = Node::chr;
    if (icase && c >= 0x80) fail("a non-ASCII character inside (?i)");
    n.icase = icase && is_letter_ascii(c);
    n.c = n.icase ? fold(c) : c;
    return n;
  }

  Node class_node(const CharClass& k) {
    classes_.push_back(k);
    Node n;
    n.kind = Node::cls;
    n.klass = int(classes_.size()) - 1;
    return n;
  }

  Node group(bool icase) {
    ++i_;  // '('
    Node n;
    if (eat("?:")) n = alt(icase);
    else if (eat("?i:")) n = alt(true);
    else if (eat("?-i:")) n = alt(false);
    else if (eat("?=") || eat("?!")) {
      n.kind = p_[i_ - 1] == '=' ? Node::look : Node::nlook;
      n.kids.push_back(alt(icase));
    } else if (eat("?>")) {
      n.kind = Node::atomic;
      n.kids.push_back(alt(icase));
    } else if (eat("?<=") || eat("?<!")) {
      fail("lookbehind");
    } else if (eat("?<") || eat("?P<")) {  // a named group: matched like any group
      while (i_ < p_.size() && p_[i_] != '>') ++i_;
      if (!eat(">")) fail("an unterminated group name");
      n = alt(icase);
    } else if (i_ < p_.size() && p_[i_] == '?') {
      fail("this (?...) group");
    } else {
      n = alt(icase);
    }
    if (!eat(")")) fail("a missing ')'");
    return n;
  }

  // \t \n ... \xHH \x{H..} \uHHHH and escaped punctuation; i_ is at the character after '\'.
  char32_t escaped_char() {
    char e = p_[i_++];
    switch (e) {
      case 't': return '\t';
      case 'n': return '\n';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case 'a': return 0x07;
      case 'e': return 0x1B;
      case 'x': case 'u': {
        bool brace = e == 'x' && i_ < p_.size() && p_[i_] == '{';
        if (brace) ++i_;
        size_t max = brace ? 8 : e == 'u' ? 4 : 2, n = 0;
        char32_t v = 0;
        while (n < max && i_ < p_.size() && std::isxdigit(static_cast<unsigned char>(p_[i_]))) {
          char h = p_[i_++];
          v = v * 16 + char32_t(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          ++n;
        }
        if (n == 0 || (e == 'u' && n != 4) || (brace && !eat("}"))) fail("a malformed \\x or \\u escape");
        if (v > 0x10FFFF) fail("a code point past U+10FFFF");
        return v;
      }
      default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
          fail("this escape (backreferences, \\b, \\h, \\k ... are not supported)");
        --i_;
        return next_cp();  // an escaped punctuation or other character stands for itself
    }
  }

  // \d \D \w \W \s \S \p{..} \P{..}: adds the item to k and returns true; i_ at the letter.
  bool class_escape(CharClass& k) {
    char e = p_[i_];
    ClassItem it;
    it.neg = e >= 'A' && e <= 'Z';
    switch (e | 0x20) {
      case 'd': it.kind = ClassItem::cats; it.mask = u::bit(u::Nd); break;
      case 'w': fail("\\w and \\W (Oniguruma's word property is not among topk's tables)");
      case 's': it.kind = ClassItem::space; break;
      case 'p': {
        if (i_ + 1 >= p_.size() || p_[i_ + 1] != '{') fail("\\p without {name}");
        size_t close = p_.find('}', i_);
        if (close == std::string_view::npos) fail("an unterminated \\p{");
        std::string name(p_.substr(i_ + 2, close - i_ - 2));
        if (!name.empty() && name[0] == '^') { it.neg = !it.neg; name.erase(0, 1); }
        it.kind = ClassItem::cats;
        it.mask = category_mask(name);
        if (!it.mask) fail("an unknown or unsupported \\p{...} property (general categories only)");
        i_ = close;
        break;
      }
      default: return false;
    }
    ++i_;
    k.items.push_back(it);
    return true;
  }

  CharClass bracket(bool icase) {  // i_ after '['
    CharClass k;
    if (i_ < p_.size() && p_[i_] == '^') { k.neg = true; ++i_; }
    bool first = true;
    for (;;) {
      if (i_ >= p_.size()) fail("an unterminated [");
      char c = p_[i_];
      if (c == ']' && !first) { ++i_; break; }
      first = false;
      if (c == '[') fail("a nested class or POSIX bracket inside [...]");
      if (c == '&' && i_ + 1 < p_.size() && p_[i_ + 1] == '&') fail("class intersection &&");
      char32_t lo;
      if (c == '\\') {
        ++i_;
        if (i_ >= p_.size()) fail("a trailing backslash");
        if (class_escape(k)) continue;
        lo = escaped_char();
      } else {
        lo = next_cp();
      }
      char32_t hi = lo;
      if (i_ + 1 < p_.size() && p_[i_] == '-' && p_[i_ + 1] != ']') {
        ++i_;
        if (p_[i_] == '\\') {
          ++i_;
          CharClass probe;
          if (class_escape(probe)) fail("a range ending in a class escape");
          hi = escaped_char();
        } else {
          hi = next_cp();
        }
        if (hi < lo) fail("a range out of order");
      }
      ClassItem it;
      it.kind = ClassItem::range;
      it.lo = lo;
      it.hi = hi;
      k.items.push_back(it);
    }
    return finish(std::move(k), icase);
  }

  CharClass finish(CharClass k, bool icase) {
    k.icase = icase;
    if (icase) {  // only classes whose case closure is what regex_impl's fold() knows
      for (const ClassItem& it : k.items) {
        if (it.kind == ClassItem::range && it.hi >= 0x80) {
          for (char32_t c = std::max<char32_t>(it.lo, 0x80); c <= it.hi; ++c)
            if (u::in(u::bit(u::Lu) | u::bit(u::Ll) | u::bit(u::Lt), c) || c == 0x345)
              fail("non-ASCII letters in a class inside (?i)");
        }
        uint32_t cased = it.kind == ClassItem::cats ? it.mask & (u::bit(u::Lu) | u::bit(u::Ll) | u::bit(u::Lt)) : 0;
        if (cased && cased != (u::bit(u::Lu) | u::bit(u::Ll) | u::bit(u::Lt)))
          fail("a case-dependent property (Lu, Ll, Lt) inside (?i)");
      }
    }
    for (char32_t c = 0; c < 128; ++c)
      if (k.eval_slow(c)) k.ascii[c >> 6] |= uint64_t(1) << (c & 63);
    return k;
  }
};

// --- compiler --------------------------------------------------------------------------------

bool nullable(const Node& n) {
  switch (n.kind) {
    case Node::chr: case Node::cls: case Node::any: return false;
    case Node::seq: for (const Node& k : n.kids) if (!nullable(k)) return false; return true;
    case Node::alt: for (const Node& k : n.kids) if (nullable(k)) return true; return false;
    case Node::rep: return n.min == 0 || nullable(n.kids[0]);
    case Node::atomic: return nullable(n.kids[0]);
    default: return true;  // lookaheads and anchors consume nothing
  }
}

// What a node's match can begin with (a superset), and whether it can be empty.
First first_of(const Node& n, const std::vector<CharClass>& classes);

void add_ascii(First& f, const First& g) {
  f.ascii[0] |= g.ascii[0];
  f.ascii[1] |= g.ascii[1];
}

struct Compiler {
  RegexProgram& prog;
  First first(const Node& n) { return first_of(n, prog.classes); }
  std::vector<std::pair<int, const Node*>> subs;  // (instruction to patch, sub-pattern)

  int emit(Inst in) {
    prog.code.push_back(in);
    return int(prog.code.size()) - 1;
  }

  void body(const Node& n, Inst& in) {  // a one-character node as the body of a star
    if (n.kind == Node::chr) { in.body = n.icase ? Op::chari : Op::chr; in.c = n.c; }
    else if (n.kind == Node::cls) { in.body = Op::cls; in.x = n.klass; }
    else in.body = Op::any;
  }

  void node(const Node& n) {
    switch (n.kind) {
      case Node::seq: for (const Node& k : n.kids) node(k); break;
      case Node::alt: {
        std::vector<int> jumps;
        for (size_t k = 0; k + 1 < n.kids.size(); ++k) {
          int split = emit({Op::split});
          prog.code[split].x = split + 1;
          prog.code[split].first = first(n.kids[k]);
          node(n.kids[k]);
          jumps.push_back(emit({Op::jmp}));
          prog.code[split].y = int(prog.code.size());
        }
        node(n.kids.back());
        for (int j : jumps) prog.code[j].x = int(prog.code.size());
        break;
      }
      case Node::chr: { Inst in{n.icase ? Op::chari : Op::chr}; in.c = n.c; emit(in); break; }
      case Node::cls: { Inst in{Op::cls}; in.x = n.klass; emit(in); break; }
      case Node::any: emit({Op::any}); break;
      case Node::anchor: emit({n.anchor_op}); break;
      case Node::look: case Node::nlook: case Node::atomic: {
        int at = emit({n.kind == Node::look ? Op::look : n.kind == Node::nlook ? Op::nlook : Op::atomic});
        subs.push_back({at, &n.kids[0]});
        break;
      }
      case Node::rep: rep(n); break;
    }
  }

  void rep(const Node& n) {
    const Node& k = n.kids[0];
    if (n.max < 0 && nullable(k)) throw Error("pre-tokenizer regex: an unbounded repeat of something "
                                              "that can match empty is not supported");
    if (k.kind == Node::chr || k.kind == Node::cls || k.kind == Node::any) {
      Inst in{Op::star};
      body(k, in);
      in.min = n.min;
      in.max = n.max;
      in.greed = n.greed;
      emit(in);
      return;
    }
    if (n.greed == Greed::possessive) {  // X*+ is (?>X*)
      int at = emit({Op::atomic});
      Node* inner = new Node(n);  // owned by the program's node arena below
      inner->greed = Greed::greedy;
      prog_nodes.emplace_back(inner);
      subs.push_back({at, inner});
      return;
    }
    bool lazy = n.greed == Greed::lazy;
    for (int r = 0; r < n.min; ++r) node(k);
    if (n.max < 0) {
      int split = emit({Op::split});
      node(k);
      Inst j{Op::jmp};
      j.x = split;
      emit(j);
      int out = int(prog.code.size());
      prog.code[split].x = lazy ? out : split + 1;
      prog.code[split].y = lazy ? split + 1 : out;
      return;
    }
    std::vector<int> splits;
    for (int r = n.min; r < n.max; ++r) {
      splits.push_back(emit({Op::split}));
      node(k);
    }
    int out = int(prog.code.size());
    for (int s : splits) {
      prog.code[s].x = lazy ? out : s + 1;
      prog.code[s].y = lazy ? s + 1 : out;
    }
  }

  std::vector<std::unique_ptr<Node>> prog_nodes;

  void compile(const Node& root) {
    node(root);
    emit({Op::match});
    while (!subs.empty()) {  // lookaheads and atomic groups: sub-programs ending in match
      auto [at, sub] = subs.back();
      subs.pop_back();
      prog.code[at].x = int(prog.code.size());
      node(*sub);
      emit({Op::match});
    }
  }
};

First first_of(const Node& n, const std::vector<CharClass>& classes) {
  First f;
  f.ascii[0] = f.ascii[1] = 0;
  f.nullable = false;
  auto set = [&](char32_t c) { f.ascii[c >> 6] |= uint64_t(1) << (c & 63); };
  switch (n.kind) {
    case Node::chr:
      if (n.c < 128) set(n.c);
      if (n.icase) set(n.c & ~char32_t(0x20));
      return f;
    case Node::cls:
      f.ascii[0] = classes[size_t(n.klass)].ascii[0];
      f.ascii[1] = classes[size_t(n.klass)].ascii[1];
      return f;
    case Node::any:
      f.ascii[0] = ~(uint64_t(1) << '\n');
      f.ascii[1] = ~uint64_t(0);
      return f;
    case Node::seq:
      f.nullable = true;
      for (const Node& k : n.kids) {
        First g = first_of(k, classes);
        add_ascii(f, g);
        if (!g.nullable) { f.nullable = false; break; }
      }
      return f;
    case Node::alt:
      for (const Node& k : n.kids) {
        First g = first_of(k, classes);
        add_ascii(f, g);
        f.nullable = f.nullable || g.nullable;
      }
      return f;
    case Node::rep: case Node::atomic: {
      First g = first_of(n.kids[0], classes);
      g.nullable = g.nullable || (n.kind == Node::rep && n.min == 0);
      return g;
    }
    default:  // anchors and lookaheads consume nothing
      f.nullable = true;
      return f;
  }
}

}  // namespace

Regex::Regex(std::string_view pattern) {
  auto prog = std::make_shared<RegexProgram>();
  prog->pattern = std::string(pattern);
  Node root = Parser(pattern, prog->classes).parse();
  Compiler c{*prog};
  c.compile(root);
  prog_ = std::move(prog);
}

const std::string& Regex::pattern() const {
  static const std::string none;
  return prog_ ? prog_->pattern : none;
}

}  // namespace topk
