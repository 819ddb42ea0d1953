// Scorers: RULER's string_match_all and string_match_part, HELMET's substring_exact_match.
#include <cctype>

#include "tasks/tasks.h"
#include "topk/core.h"

namespace topk::tasks {

namespace {

std::string lower_strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace((unsigned char)s[b])) b++;
  while (e > b && std::isspace((unsigned char)s[e - 1])) e--;
  std::string out(s.substr(b, e - b));
  for (char& c : out) c = char(std::tolower((unsigned char)c));
  return out;
}

int found(std::string_view prediction, const std::vector<std::string>& gold) {
  std::string p = lower_strip(prediction);
  int n = 0;
  for (const auto& g : gold) n += p.find(lower_strip(g)) != std::string::npos;
  return n;
}

// SQuAD's normalize_answer as HELMET uses it: lower case, ASCII punctuation removed, the words
// "a", "an" and "the" removed, whitespace runs collapsed to one space, ends trimmed.
std::string normalize_answer(std::string_view s) {
  static const std::string_view punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
  std::string t;
  for (char c : s)
    if (punct.find(c) == std::string_view::npos) t += char(std::tolower((unsigned char)c));
  auto word = [](char c) { return std::isalnum((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80; };
  std::string u;  // articles that stand as whole words become a space
  for (size_t i = 0; i < t.size();) {
    if (word(t[i])) {
      size_t j = i;
      while (j < t.size() && word(t[j])) j++;
      std::string_view w(t.data() + i, j - i);
      if (w == "a" || w == "an" || w == "the") u += ' ';
      else u += w;
      i = j;
    } else {
      u += t[i++];
    }
  }
  std::string out;
  for (size_t i = 0; i < u.size();) {
    if (std::isspace((unsigned char)u[i])) {
      while (i < u.size() && std::isspace((unsigned char)u[i])) i++;
      if (!out.empty() && i < u.size()) out += ' ';
    } else {
      out += u[i++];
    }
  }
  return out;
}

}  // namespace

const char* scorer_name(Scorer s) {
  switch (s) {
    case Scorer::match_all: return "string_match_all";
    case Scorer::match_part: return "string_match_part";
    case Scorer::substring_exact_match: return "substring_exact_match";
  }
  return "?";
}

double substring_exact_match(std::string_view prediction, const std::vector<std::string>& gold) {
  TOPK_CHECK(!gold.empty(), "substring_exact_match: no gold answers");
  const std::string p = normalize_answer(prediction);
  for (const auto& g : gold)
    if (p.find(normalize_answer(g)) != std::string::npos) return 100.0;
  return 0.0;
}

double string_match_all(std::string_view prediction, const std::vector<std::string>& gold) {
  TOPK_CHECK(!gold.empty(), "string_match_all: no gold answers");
  return 100.0 * found(prediction, gold) / double(gold.size());
}

double string_match_part(std::string_view prediction, const std::vector<std::string>& gold) {
  TOPK_CHECK(!gold.empty(), "string_match_part: no gold answers");
  return found(prediction, gold) > 0 ? 100.0 : 0.0;
}

double score(Scorer s, std::string_view prediction, const std::vector<std::string>& gold) {
  switch (s) {
    case Scorer::match_all: return string_match_all(prediction, gold);
    case Scorer::match_part: return string_match_part(prediction, gold);
    case Scorer::substring_exact_match: return substring_exact_match(prediction, gold);
  }
  return 0;
}

}  // namespace topk::tasks
