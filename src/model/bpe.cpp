// Byte-level BPE encoding and decoding (model/bpe.h); loading is in bpe_load.cpp.
#include "model/bpe.h"

#include <algorithm>
#include <deque>
#include <queue>

#include "core/unicode.h"
#include "topk/core.h"

namespace topk {

void PairMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{kEmpty, 0});
  mask_ = cap - 1;
  size_ = 0;
  for (const Slot& s : old)
    if (s.k != kEmpty) set(int32_t(s.k >> 32), int32_t(uint32_t(s.k)), uint32_t(s.v >> 32), int32_t(uint32_t(s.v)));
}

void PairMap::set(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
  if (2 * (size_ + 1) > slots_.size()) reserve(size_ + 1);
  uint64_t k = key(a, b), v = uint64_t(rank) << 32 | uint32_t(merged);
  for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
    if (slots_[i].k == k) { slots_[i].v = v; return; }
    if (slots_[i].k == kEmpty) { slots_[i] = {k, v}; ++size_; return; }
  }
}

void BpeTrie::add(std::string_view pattern, int32_t token) {
  if (nodes.empty()) nodes.emplace_back();
  int32_t n = 0;
  for (unsigned char c : pattern) {
    int32_t next = -1;
    for (auto& [byte, kid] : nodes[size_t(n)].kids)
      if (byte == c) next = kid;
    if (next < 0) {
      next = int32_t(nodes.size());
      nodes[size_t(n)].kids.push_back({c, next});
      nodes.emplace_back();
    }
    n = next;
  }
  nodes[size_t(n)].token = token;
  first[uint8_t(pattern[0])] = true;
}

namespace {

struct Seg { size_t b, e; int32_t token; };  // token: index into Bpe::added, -1 for text

// Rust regex's \w, which tokenizers uses for single_word: letters, marks, digits, connector
// punctuation (and letter numbers, join controls); close to the Alphabetic property it names.
bool is_word(char32_t c) {
  using namespace unicode;
  return in(kLetter | kMark | bit(Nd) | bit(Nl) | bit(Pc), c) || c == 0x200C || c == 0x200D;
}
char32_t last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  int len;
  return s.empty() ? 0 : unicode::decode(s, i, &len);
}

// AddedVocabulary::find_matches: added tokens in sentence, leftmost-longest, non-overlapping.
void split_added(const Bpe& b, const BpeTrie& trie, std::string_view text, size_t base, bool special,
                 std::vector<Seg>& out) {
  size_t start_offset = 0, pos = 0;
  while (pos < text.size()) {
    if (!trie.first[uint8_t(text[pos])]) { ++pos; continue; }
    int32_t n = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      int32_t next = -1;
      for (auto& [byte, kid] : trie.nodes[size_t(n)].kids)
        if (byte == uint8_t(text[i])) { next = kid; break; }
      if (next < 0) break;
      n = next;
      if (trie.nodes[size_t(n)].token >= 0) { best = trie.nodes[size_t(n)].token; best_end = i + 1; }
    }
    if (best < 0) { ++pos; continue; }
    size_t start = pos, stop = best_end;
    pos = best_end;  // the next search starts after this match, used or not
    const BpeAddedToken& t = b.added[size_t(best)];
    if (t.special && !special) continue;
    if (t.single_word) {
      int len;
      bool start_ok = start == 0 || !is_word(last_char(text.substr(0, start)));
      bool stop_ok = stop == text.size() || !is_word(unicode::decode(text, stop, &len));
      if (!start_ok || !stop_ok) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t p = s - 1;
        while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
        int len;
        if (!unicode::is_space(unicode::decode(text, p, &len))) break;
        s = p;
      }
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      int len;
      while (stop < text.size() && unicode::is_space(unicode::decode(text, stop, &len))) stop += size_t(len);
      pos = std::max(pos, stop);
    }
    if (start_offset < start) out.push_back({base + start_offset, base + start, -1});
    out.push_back({base + start, base + stop, best});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({base + start_offset, base + text.size(), -1});
}

// A piece of the text on its way through the pre-tokenizers. shift = 1 when s begins with a
// space that ByteLevel's add_prefix_space put there (it maps to the piece's first byte).
struct Piece {
  std::string_view s;
  int64_t w0;  // offset of s in the working text
  int shift;
  Piece sub(size_t j, size_t n) const {
    return j == 0 ? Piece{s.substr(0, n), w0, shift} : Piece{s.substr(j, n), w0 + int64_t(j) - shift, 0};
  }
};

struct Match { size_t b, e; bool m; };

// NormalizedString::split(pattern, behavior): the pieces that survive, in order.
void split_piece(const BpePreStep& st, const Piece& p, std::vector<Match>& ms, std::vector<Match>& keep,
                 std::vector<std::pair<size_t, size_t>>& found, std::vector<Piece>& out) {
  found.clear();
  if (st.is_regex) {
    st.regex.find_all(p.s, found);
  } else {
    for (size_t i = p.s.find(st.literal); i != std::string_view::npos; i = p.s.find(st.literal, i))
      found.push_back({i, i += st.literal.size()});
  }
  ms.clear();
  size_t prev = 0;
  for (auto [b, e] : found) {
    if (prev != b) ms.push_back({prev, b, false});
    ms.push_back({b, e, true});
    prev = e;
  }
  if (prev != p.s.size()) ms.push_back({prev, p.s.size(), false});
  if (st.invert) for (Match& m : ms) m.m = !m.m;
  keep.clear();  // (offsets, removed)
  switch (st.behavior) {
    case BpePreStep::isolated: for (Match m : ms) keep.push_back({m.b, m.e, false}); break;
    case BpePreStep::removed: keep.assign(ms.begin(), ms.end()); break;
    case BpePreStep::contiguous: {
      bool prev_m = false;
      for (Match m : ms) {
        if (m.m == prev_m && !keep.empty()) keep.back().e = m.e;
        else keep.push_back({m.b, m.e, false});
        prev_m = m.m;
      }
      break;
    }
    case BpePreStep::merged_with_previous: {
      bool prev_m = false;
      for (Match m : ms) {
        if (m.m && !prev_m && !keep.empty()) keep.back().e = m.e;
        else keep.push_back({m.b, m.e, false});
        prev_m = m.m;
      }
      break;
    }
    case BpePreStep::merged_with_next: {
      bool prev_m = false;
      for (size_t k = ms.size(); k-- > 0;) {
        Match m = ms[k];
        if (m.m && !prev_m && !keep.empty()) keep.back().b = m.b;
        else keep.push_back({m.b, m.e, false});
        prev_m = m.m;
      }
      std::reverse(keep.begin(), keep.end());
      break;
    }
  }
  for (const Match& k : keep)
    if (!k.m && k.e > k.b) out.push_back(p.sub(k.b, k.e - k.b));
}

// The BPE of one word: ids and how many bytes of the word each covers. Word::merge_all of
// tokenizers: the lowest-ranked merge first, the leftmost among equal ranks, with stale queue
// entries dropped when their pair no longer holds.
struct Merger {
  struct Sym { int32_t id; int32_t prev, next; uint32_t len, off; };  // len 0: merged away; off: in the word
  struct Cand {
    uint32_t rank; int32_t pos, merged;
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Sym> sym;
  std::vector<Cand> heap;

  void add(int32_t id, uint32_t len, uint32_t off) {
    int32_t n = int32_t(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back({id, n - 1, -1, len, off});
  }

  // Word::merge_word of tokenizers, over the word's bytes (each one ByteLevel character).
  void run(const Bpe& b, std::string_view w, std::vector<int32_t>& ids, std::vector<uint32_t>& offs) {
    sym.clear();
    int32_t unk_id = -1;
    uint32_t unk_len = 0, unk_off = 0;
    for (uint32_t off = 0; off < w.size(); ++off) {
      unsigned char c = static_cast<unsigned char>(w[off]);
      uint32_t len = b.byte_len[c];
      if (b.byte_id[c] >= 0) {
        if (unk_id >= 0) { add(unk_id, unk_len, unk_off); unk_id = -1; }
        add(b.byte_id[c], len, off);
        continue;
      }
      if (b.byte_fallback) {  // "<0xXX>" for each UTF-8 byte of the byte's ByteLevel character
        std::string bytes;
        unicode::append_utf8(bytes, b.byte_char[c]);
        bool all = true;
        for (unsigned char x : bytes) all = all && b.fallback_id[x] >= 0;
        if (all) {  // (a pending unk stays pending here, as in tokenizers)
          for (unsigned char x : bytes) add(b.fallback_id[x], 1, off);
          continue;
        }
      }
      if (b.unk >= 0 || !b.unk_missing.empty()) {
        TOPK_CHECK(b.unk >= 0, "tokenizer: unk_token '%s' is not in the vocabulary", b.unk_missing.c_str());
        if (unk_id >= 0 && b.fuse_unk) { unk_len += len; continue; }
        if (unk_id >= 0) add(unk_id, unk_len, unk_off);
        unk_id = b.unk;
        unk_len = len;
        unk_off = off;
      }
    }
    if (unk_id >= 0) add(unk_id, unk_len, unk_off);

    heap.clear();
    for (size_t i = 0; i + 1 < sym.size(); ++i) push(b, int32_t(i), sym[i].id, sym[i + 1].id);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      Cand top = heap.back();
      heap.pop_back();
      Sym& s = sym[size_t(top.pos)];
      if (s.len == 0 || s.next < 0) continue;
      Sym right = sym[size_t(s.next)];
      uint64_t m = b.merges.get(s.id, right.id);
      if (m == PairMap::kNone || int32_t(uint32_t(m)) != top.merged) continue;
      sym[size_t(s.next)].len = 0;
      s.id = top.merged;
      s.len += right.len;
      s.next = right.next;
      if (right.next >= 0) sym[size_t(right.next)].prev = top.pos;
      if (s.prev >= 0) push(b, s.prev, sym[size_t(s.prev)].id, s.id);
      if (s.next >= 0) push(b, top.pos, s.id, sym[size_t(s.next)].id);
    }
    for (const Sym& s : sym)
      if (s.len) { ids.push_back(s.id); offs.push_back(s.off); }
  }

  void push(const Bpe& b, int32_t pos, int32_t l, int32_t r) {
    uint64_t m = b.merges.get(l, r);
    if (m == PairMap::kNone) return;
    heap.push_back({uint32_t(m >> 32), pos, int32_t(uint32_t(m))});
    std::push_heap(heap.begin(), heap.end());
  }
};

struct Encoder {
  const Bpe& b;
  std::vector<int32_t>& ids;
  std::vector<int64_t>* starts;
  const std::vector<int64_t>* wmap = nullptr;  // working-text offset -> text offset; null: same
  std::deque<std::string> arena;               // pieces that ByteLevel gave a prefix space
  std::vector<Piece> cur, next;
  std::vector<Match> ms, keep;
  std::vector<std::pair<size_t, size_t>> found;
  Merger merger;
  // The BPE of each distinct word of this text, once: word -> (first, count) in cache_ids.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> cache_ids;
  std::vector<uint32_t> cache_offs;

  void token(int32_t id, int64_t w) {
    ids.push_back(id);
    if (starts) starts->push_back(wmap ? (*wmap)[size_t(w)] : w);
  }

  void text(std::string_view w, size_t begin, size_t end) {  // pre-tokenize and merge w[begin, end)
    if (end == begin) return;
    cur.assign(1, Piece{w.substr(begin, end - begin), int64_t(begin), 0});
    for (const BpePreStep& st : b.pre) {
      next.clear();
      for (const Piece& p : cur) {
        if (st.kind == BpePreStep::split) {
          split_piece(st, p, ms, keep, found, next);
          continue;
        }
        Piece q = p;
        if (st.add_prefix_space && q.s[0] != ' ') {
          std::string& sp = arena.emplace_back(1, ' ');
          sp.append(q.s);
          q = Piece{sp, q.w0, 1};
        }
        if (st.use_regex) split_piece(st, q, ms, keep, found, next);  // GPT-2's regex, Isolated
        else next.push_back(q);
      }
      std::swap(cur, next);
    }
    for (const Piece& p : cur) word(p);
  }

  void word(const Piece& p) {
    auto [it, fresh] = cache.try_emplace(p.s, uint32_t(cache_ids.size()), 0u);
    if (fresh) {
      auto v = b.ignore_merges ? b.vocab.find(std::string(p.s)) : b.vocab.end();
      if (v != b.vocab.end()) {
        cache_ids.push_back(v->second);
        cache_offs.push_back(0);
      } else {
        merger.run(b, p.s, cache_ids, cache_offs);
      }
      it->second.second = uint32_t(cache_ids.size()) - it->second.first;
    }
    for (uint32_t k = it->second.first; k < it->second.first + it->second.second; ++k) {
      int64_t j = cache_offs[k];
      token(cache_ids[k], j == 0 ? p.w0 : p.w0 + j - p.shift);
    }
  }
};

}  // namespace

void bpe_encode(const Bpe& b, std::string_view text, bool special, std::vector<int32_t>& ids,
                std::vector<int64_t>* starts) {
  Encoder enc{b, ids, starts};
  std::vector<Seg> segs, segs2;
  if (b.raw_trie.empty()) segs.push_back({0, text.size(), -1});
  else split_added(b, b.raw_trie, text, 0, special, segs);

  std::string norm;
  std::vector<int64_t> wmap, m;
  std::string_view w = text;
  if (b.nfc) {  // added tokens stay as they are; the text between them is normalized
    for (Seg& s : segs) {
      size_t at = norm.size();
      if (s.token >= 0) {
        norm.append(text.substr(s.b, s.e - s.b));
        for (size_t k = s.b; k < s.e; ++k) wmap.push_back(int64_t(k));
      } else {
        std::string x = unicode::nfc(text.substr(s.b, s.e - s.b), &m);
        norm += x;
        for (size_t k = 0; k < x.size(); ++k) wmap.push_back(int64_t(s.b) + m[k]);
      }
      s.b = at;
      s.e = norm.size();
    }
    wmap.push_back(int64_t(text.size()));
    w = norm;
    enc.wmap = &wmap;
  }
  for (const Seg& s : segs) {
    if (s.token >= 0 || b.norm_trie.empty()) segs2.push_back(s);
    else split_added(b, b.norm_trie, w.substr(s.b, s.e - s.b), s.b, special, segs2);
  }
  for (const Seg& s : segs2) {
    if (s.token >= 0) enc.token(b.added[size_t(s.token)].id, int64_t(s.b));
    else enc.text(w, s.b, s.e);
  }
}

std::string bpe_decode(const Bpe& b, const int32_t* ids, size_t n, bool skip_special) {
  std::string bytes;
  for (size_t k = 0; k < n; ++k) {
    int32_t id = ids[k];
    if (id < 0 || id >= b.size || !(b.flags[size_t(id)] & Bpe::kKnown)) continue;
    if (skip_special && (b.flags[size_t(id)] & Bpe::kSpecial)) continue;
    bytes += b.piece[size_t(id)];
  }
  return utf8_lossy(bytes);
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](size_t i) { return i < s.size() && (at(i) & 0xC0) == 0x80; };
  for (size_t i = 0; i < s.size();) {
    unsigned c = at(i);
    if (c < 0x80) { out += char(c); ++i; continue; }
    int width = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    // The second byte's range depends on the first (no overlongs, surrogates, or > U+10FFFF).
    unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    size_t good = 0;  // bytes of a valid prefix of the sequence
    if (width) {
      good = 1;
      if (i + 1 < s.size() && at(i + 1) >= lo && at(i + 1) <= hi) {
        good = 2;
        while (good < size_t(width) && cont(i + good)) ++good;
      }
    }
    if (width && good == size_t(width)) {
      out.append(s.data() + i, good);
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for the maximal invalid subpart
    }
    i += good ? good : 1;
  }
  return out;
}

}  // namespace topk
