// RULER scorers: string_match_all and string_match_part.
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

}  // namespace

const char* scorer_name(Scorer s) {
  return s == Scorer::match_all ? "string_match_all" : "string_match_part";
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
  return s == Scorer::match_all ? string_match_all(prediction, gold)
                                : string_match_part(prediction, gold);
}

}  // namespace topk::tasks
