#include "core/unicode.h"

#include <algorithm>
#include <array>
#include <memory>

namespace topk::unicode {

using namespace detail;

char32_t decode(std::string_view s, size_t i, int* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  size_t left = s.size() - i;
  unsigned c = p[0];
  *len = 1;
  if (c < 0x80) return c;
  int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;  // 0x80..0xC1: never a lead byte
  if (n == 0 || c > 0xF4 || size_t(n) > left) return kInvalid + c;
  char32_t v = c & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    if ((p[k] & 0xC0) != 0x80) return kInvalid + c;
    v = (v << 6) | (p[k] & 0x3F);
  }
  static constexpr char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return kInvalid + c;
  *len = n;
  return v;
}

void append_utf8(std::string& out, char32_t c) {
  if (c >= kInvalid) {
    out += char(c - kInvalid);  // an invalid byte goes back out as it came in
  } else if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

const char* version() { return kVersion; }

template <class R>
static const R* find_range(const R* t, size_t n, char32_t c) {
  const R* it = std::upper_bound(t, t + n, c, [](char32_t v, const R& r) { return v < r.lo; });
  if (it == t) return nullptr;
  --it;
  return c <= it->hi ? it : nullptr;
}

namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kSCount = kLCount * kVCount * kTCount;

const Decomp* find_decomp(char32_t c) {
  const Decomp* e = kDecompositions + kDecompositionsSize;
  const Decomp* it = std::lower_bound(kDecompositions, e, c,
                                      [](const Decomp& d, char32_t v) { return d.cp < v; });
  return it != e && it->cp == c ? it : nullptr;
}

// Per-code-point facts of the Basic Multilingual Plane, looked up once per character on the
// hot path; the other planes use the range tables directly.
struct Tables {
  std::array<uint8_t, 0x10000> cat{};
  // starts: nothing before this character can combine with it or reorder past it, so NFC of
  // a text is the NFC of its pieces cut before such characters. quick: NFC leaves it alone.
  std::array<bool, 0x10000> starts{}, quick{};
  std::vector<char32_t> seconds;  // sorted: characters that compose with a preceding one

  Tables() {
    for (size_t i = 0; i < kCategoriesSize; ++i)
      for (char32_t c = kCategories[i].lo; c <= kCategories[i].hi && c < 0x10000; ++c)
        cat[c] = kCategories[i].cat;
    for (size_t i = 0; i < kCompositionsSize; ++i) seconds.push_back(kCompositions[i].second);
    std::sort(seconds.begin(), seconds.end());
    seconds.erase(std::unique(seconds.begin(), seconds.end()), seconds.end());
    for (char32_t c = 0; c < 0x10000; ++c) {
      starts[c] = compute_starts(c);
      quick[c] = combining_class(c) == 0 && !find_decomp(c);
    }
  }
  bool is_second(char32_t c) const {
    if (c >= kVBase && c < kVBase + kVCount) return true;        // Hangul vowel jamo
    if (c > kTBase && c < kTBase + kTCount) return true;         // Hangul trailing jamo
    return std::binary_search(seconds.begin(), seconds.end(), c);
  }
  // A precomposed character whose decomposition begins with a non-starter or a second (rare:
  // U+0F73 ...) does not start a piece either: its first part can still combine backwards.
  bool compute_starts(char32_t c) const {
    for (;;) {
      if (combining_class(c) != 0 || is_second(c)) return false;
      const Decomp* d = find_decomp(c);
      if (!d) return true;
      c = d->first;
    }
  }
  bool starts_at(char32_t c) const {
    return c < 0x10000 ? starts[c] : (c >= kInvalid || compute_starts(c));
  }
  bool quick_at(char32_t c) const {
    return c < 0x10000 ? quick[c] : (c >= kInvalid || (combining_class(c) == 0 && !find_decomp(c)));
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

Cat category(char32_t c) {
  if (c < 0x10000) return Cat(tables().cat[c]);
  const CatRange* r = find_range(kCategories, kCategoriesSize, c);
  return r ? Cat(r->cat) : Cn;
}

bool is_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || c == 0x20;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const CccRange* r = find_range(kCombining, kCombiningSize, c);
  return r ? r->ccc : 0;
}

// ---- NFC ------------------------------------------------------------------------------------

static void decompose(char32_t c, std::vector<char32_t>& out) {
  if (c >= kSBase && c < kSBase + kSCount) {
    int s = int(c - kSBase);
    out.push_back(kLBase + s / (kVCount * kTCount));
    out.push_back(kVBase + (s % (kVCount * kTCount)) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomp* d = c < kInvalid ? find_decomp(c) : nullptr;
  if (!d) {
    out.push_back(c);
    return;
  }
  decompose(d->first, out);
  if (d->second) decompose(d->second, out);
}

static char32_t compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const Comp* e = kCompositions + kCompositionsSize;
  const Comp* it = std::lower_bound(kCompositions, e, std::pair(a, b), [](const Comp& x, auto v) {
    return x.first != v.first ? x.first < v.first : x.second < v.second;
  });
  return it != e && it->first == a && it->second == b ? it->composite : 0;
}

// NFC of one run that starts at a character nothing before it combines with.
static void nfc_run(const std::vector<char32_t>& in, std::vector<char32_t>& d, std::string& out) {
  d.clear();
  for (char32_t c : in) decompose(c, d);
  // Canonical order: a stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) { ++i; continue; }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j, [](char32_t x, char32_t y) {
      return combining_class(x) < combining_class(y);
    });
    i = j;
  }
  // Canonical composition (the algorithm of UAX #15).
  size_t starter = 0, n = d.empty() ? 0 : 1;
  int last = d.empty() || combining_class(d[0]) == 0 ? 0 : 256;
  for (size_t i = 1; i < d.size(); ++i) {
    char32_t c = d[i];
    int cc = combining_class(c);
    char32_t comp = combining_class(d[starter]) == 0 ? compose(d[starter], c) : 0;
    if (comp && (last < cc || last == 0)) {
      d[starter] = comp;
      continue;
    }
    if (cc == 0) starter = n;
    last = cc;
    d[n++] = c;
  }
  d.resize(n);
  for (char32_t c : d) append_utf8(out, c);
}

std::string nfc(std::string_view s, std::vector<int64_t>* map) {
  const Tables& t = tables();
  std::string out;
  out.reserve(s.size());
  if (map) map->clear();
  std::vector<char32_t> run, work;
  size_t i = 0;
  while (i < s.size()) {
    // The piece: this character and every following one that might combine with it.
    int len;
    char32_t c = decode(s, i, &len);
    size_t j = i + size_t(len);
    bool alone = true;
    run.assign(1, c);
    while (j < s.size()) {
      char32_t d = decode(s, j, &len);
      if (t.starts_at(d)) break;
      alone = false;
      run.push_back(d);
      j += size_t(len);
    }
    if (alone && t.quick_at(c)) {  // the common case: one character that stays as it is
      if (map) for (size_t k = i; k < j; ++k) map->push_back(int64_t(k));
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    size_t before = out.size();
    nfc_run(run, work, out);
    bool same = out.size() - before == j - i && out.compare(before, j - i, s.data() + i, j - i) == 0;
    if (map)
      for (size_t k = before; k < out.size(); ++k) map->push_back(int64_t(same ? i + (k - before) : i));
    i = j;
  }
  if (map) map->push_back(int64_t(s.size()));
  return out;
}

}  // namespace topk::unicode
