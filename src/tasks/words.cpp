// Word lists (built in, or Debian's wamerican for CWE), random values and prose grammar.
#include "tasks/words.h"

#include <cstdlib>
#include <fstream>
#include <set>

#include "tasks/internal.h"
#include "topk/core.h"
#include <algorithm>

namespace topk::tasks {

const std::vector<std::string_view> kAdjectives = {
    "able", "acid", "agile", "alert", "ancient", "angry", "ashamed", "awful", "bitter", "black",
    "blue", "bold", "brave", "brief", "bright", "broad", "busy", "calm", "careful", "cheap",
    "clean", "clever", "cold", "cool", "crazy", "cruel", "curious", "damp", "dark", "deep",
    "dizzy", "dry", "eager", "early", "easy", "empty", "fair", "famous", "fancy", "fast",
    "fierce", "flat", "fresh", "friendly", "funny", "gentle", "giant", "glad", "golden", "grand",
    "green", "grumpy", "happy", "hard", "heavy", "helpful", "hollow", "honest", "huge", "humble",
    "hungry", "icy", "jolly", "kind", "large", "late", "lazy", "light", "little", "lively",
    "loud", "lucky", "mellow", "merry", "mighty", "modern", "narrow", "neat", "nervous", "noisy",
    "odd", "old", "orange", "pale", "plain", "polite", "proud", "purple", "quick", "quiet",
    "rapid", "rare", "red", "rich", "rough", "round", "royal", "rude", "sad", "safe",
    "salty", "scary", "sharp", "shiny", "short", "shy", "silent", "silly", "slow", "small",
    "smooth", "soft", "solid", "sour", "spicy", "steep", "sticky", "strange", "strong", "sunny",
    "sweet", "swift", "tall", "tame", "tender", "thick", "thin", "tidy", "tiny", "tough",
    "ugly", "vast", "violet", "warm", "weak", "wet", "white", "wide", "wild", "wise",
    "witty", "wooden", "yellow", "young", "zany", "zealous"};

const std::vector<std::string_view> kNouns = {
    "anchor", "apple", "arrow", "baker", "basket", "beach", "bell", "bicycle", "bird", "blanket",
    "boat", "bottle", "bridge", "brush", "bucket", "cabin", "camera", "candle", "canyon", "captain",
    "carpet", "castle", "cat", "chair", "cloud", "coin", "comet", "cottage", "crayon", "desert",
    "doctor", "dog", "dragon", "drum", "eagle", "engine", "farmer", "feather", "field", "flower",
    "forest", "fountain", "garden", "ghost", "glacier", "guitar", "hammer", "harbor", "helmet", "hill",
    "horse", "island", "jacket", "jungle", "kettle", "kitten", "ladder", "lake", "lamp", "lantern",
    "lemon", "lion", "meadow", "mirror", "monkey", "mountain", "needle", "ocean", "orchard", "otter",
    "owl", "painter", "parrot", "pencil", "pepper", "piano", "pillow", "planet", "pocket", "pond",
    "rabbit", "river", "robot", "rocket", "sailor", "school", "shadow", "shell", "ship", "singer",
    "spoon", "star", "station", "stone", "street", "table", "teacher", "tiger", "tower", "train",
    "tree", "tunnel", "valley", "violin", "wagon", "wallet", "window", "wizard", "wolf", "zebra"};

// Regular verbs: third person adds "s", past adds "ed" (or "d" after a final 'e').
static const std::vector<std::string_view> kVerbs = {
    "answer", "borrow", "carve", "clean", "climb", "collect", "cover", "crush", "deliver", "describe",
    "enjoy", "explain", "follow", "gather", "greet", "guard", "help", "invent", "join", "jump",
    "kick", "land", "lift", "listen", "measure", "melt", "mention", "move", "notice", "open",
    "paint", "pick", "plant", "polish", "pull", "push", "remember", "repair", "return", "save",
    "share", "shout", "sign", "start", "test", "trust", "turn", "visit", "wander", "watch"};
static const std::vector<std::string_view> kAdverbs = {
    "quietly", "slowly", "quickly", "gladly", "carefully", "loudly", "rarely", "often", "calmly",
    "boldly", "softly", "eagerly", "gently", "kindly", "proudly", "suddenly", "warmly", "wisely",
    "neatly", "briskly"};
static const std::vector<std::string_view> kPreps = {
    "near", "behind", "under", "above", "beside", "across", "inside", "around", "beyond", "along"};

template <class V> static std::string pick(Rng& r, const V& v) { return std::string(v[r.below(v.size())]); }

static std::string third(std::string_view v) {
  std::string s(v);
  if (s.ends_with("sh") || s.ends_with("ch")) return s + "es";
  return s + "s";
}
static std::string past(std::string_view v) {
  std::string s(v);
  return s.back() == 'e' ? s + "d" : s + "ed";
}
static std::string plural(std::string_view n) {
  std::string s(n);
  if (s.ends_with("sh") || s.ends_with("ch") || s.back() == 's') return s + "es";
  return s + "s";
}

std::vector<std::string> prose_sentence(Rng& r) {
  std::string text;
  auto adj = [&] { return pick(r, kAdjectives); };
  auto noun = [&] { return pick(r, kNouns); };
  auto verb = [&] { return pick(r, kVerbs); };
  switch (r.below(6)) {
    case 0: text = "The " + adj() + " " + noun() + " " + third(verb()) + " the " + noun(); break;
    case 1: text = "A " + noun() + " " + pick(r, kPreps) + " the " + noun() + " " + past(verb()) + " " +
                   pick(r, kAdverbs); break;
    case 2: {
      std::string a = adj();
      a[0] = char(a[0] - 'a' + 'A');
      text = a + " " + plural(noun()) + " " + verb() + " " + pick(r, kAdverbs) + " " +
             pick(r, kPreps) + " the " + adj() + " " + noun();
      break;
    }
    case 3: {
      std::string a = adj();
      text = "In the " + noun() + ", the " + noun() + " " + third(verb()) +
             (std::string_view("aeiou").find(a[0]) != std::string_view::npos ? " an " : " a ") + a +
             " " + noun();
      break;
    }
    case 4: text = "Some " + plural(noun()) + " " + verb() + " when the " + noun() + " " +
                   third(verb()) + " " + pick(r, kAdverbs); break;
    default: text = "Every " + noun() + " " + past(verb()) + " the " + adj() + " " + noun() +
                    " and the " + noun(); break;
  }
  text += '.';
  std::vector<std::string> words;
  size_t p = 0;
  while (p < text.size()) {
    size_t q = text.find(' ', p);
    if (q == std::string::npos) q = text.size();
    words.push_back(text.substr(p, q - p));
    p = q + 1;
  }
  return words;
}

std::string key_words(Rng& r) { return pick(r, kAdjectives) + "-" + pick(r, kNouns); }

std::string digits(Rng& r, int n) {
  std::string s(size_t(n), '0');
  s[0] = char('1' + r.below(9));
  for (int i = 1; i < n; i++) s[size_t(i)] = char('0' + r.below(10));
  return s;
}

std::string uuid4(Rng& r) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; i++) {
    int v = int(r.below(16));
    if (i == 12) v = 4;              // version
    if (i == 16) v = 8 + (v & 3);    // variant 10xx
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    s += hex[v];
  }
  return s;
}

std::string letters(Rng& r, int n, bool upper) {
  std::string s;
  for (int i = 0; i < n; i++) s += char((upper ? 'A' : 'a') + r.below(26));
  return s;
}

const std::vector<std::string>& dictionary_words() {
  static const std::vector<std::string> words = [] {
    const char* env = std::getenv("TOPK_WORDLIST");
    std::string path = env && *env ? env : "/usr/share/dict/american-english-small";
    std::ifstream f(path);
    TOPK_CHECK(f.good(),
               "word list %s not found: install the Debian package 'wamerican-small' "
               "(tools/install-deps.sh does), or set TOPK_WORDLIST to a file of one word per line",
               path.c_str());
    // Vulgar and loaded words are left out of generated lists.
    static const std::set<std::string_view> excluded = {
        "anal", "anus", "ass", "asses", "bitch", "booby", "butt", "butts", "cock", "cocks",
        "crap", "cum", "damn", "gay", "horny", "kinky", "penis", "prick", "pussy", "queer",
        "rape", "raped", "rapes", "rapist", "semen", "sex", "sexy", "slut", "sluts", "smut",
        "sperm", "tit", "tits", "vagina", "whore", "whores"};
    std::vector<std::string> out;
    std::string w;
    while (std::getline(f, w)) {
      bool ok = w.size() >= 3 && w.size() <= 6 && !excluded.count(w);
      for (char c : w) ok = ok && c >= 'a' && c <= 'z';
      if (ok) out.push_back(w);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    TOPK_CHECK(out.size() >= 1000, "word list %s has only %zu lowercase words of 3..6 letters; "
               "need at least 1000", path.c_str(), out.size());
    return out;
  }();
  return words;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) {
    if (i) s += sep;
    s += v[i];
  }
  return s;
}

std::string join_and(const std::vector<std::string>& v) {
  if (v.size() <= 1) return v.empty() ? "" : v[0];
  std::vector<std::string> head(v.begin(), v.end() - 1);
  return join(head, ", ") + ", and " + v.back();
}

}  // namespace topk::tasks
