// The task table: names (RULER's where the task is RULER's), scorers, dispatch.
#include <cmath>

#include "tasks/internal.h"
#include "topk/core.h"

namespace topk::tasks {

namespace {

using NS = NiahSpec;
// name, haystack, uuid keys, uuid values, keys, values per key, keys queried (RULER's configs).
const NiahSpec kNiah[] = {
    {"niah_single_1", NS::noise, false, false, 1, 1, 1},
    {"niah_single_2", NS::essay, false, false, 1, 1, 1},
    {"niah_single_3", NS::essay, false, true, 1, 1, 1},
    {"niah_multikey_1", NS::essay, false, false, 4, 1, 1},
    {"niah_multikey_2", NS::needle, false, false, 1, 1, 1},
    {"niah_multikey_3", NS::needle, true, true, 1, 1, 1},
    {"niah_multivalue", NS::essay, false, false, 1, 4, 1},
    {"niah_multiquery", NS::essay, false, false, 4, 1, 4},
};

}  // namespace

const std::vector<TaskInfo>& task_list() {
  using S = Scorer;
  const Mode R = Mode::ruler, H = Mode::helmet, C = Mode::compact;
  static const std::vector<TaskInfo> list = {
      {"niah_single_1", "NIAH: one 7-digit number in the noise haystack", S::match_all, true, R},
      {"niah_single_2", "NIAH: one 7-digit number in generated prose", S::match_all, true, R},
      {"niah_single_3", "NIAH: one UUID in generated prose", S::match_all, true, R},
      {"niah_multikey_1", "NIAH: the queried key among 3 distractor needles, prose", S::match_all, true, R},
      {"niah_multikey_2", "NIAH: haystack made of distractor needles (numbers)", S::match_all, true, R},
      {"niah_multikey_3", "NIAH: haystack of distractor needles, UUID keys and values", S::match_all, true, R},
      {"niah_multivalue", "NIAH: one key with 4 values, prose", S::match_all, true, R},
      {"niah_multiquery", "NIAH: 4 keys queried at once, prose", S::match_all, true, R},
      {"vt", "variable tracking: a 4-hop assignment chain in noise", S::match_all, true, R},
      {"cwe", "common words extraction: the 10 most common words of a list", S::match_all, false, R},
      {"fwe", "frequent words extraction: the 3 most frequent coded words (Zipf)", S::match_all, false, R},
      {"json_kv", "HELMET JSON key-value retrieval: UUID pairs", S::substring_exact_match, true, H},
      {"passkey", "passkey: a 5-digit key in the noise filler (compact)", S::match_all, true, C},
      {"mqar", "multi-query associative recall: 4 queried key=value pairs (compact)", S::match_all, true, C},
      {"ar", "associative recall for tiny models: one-letter keys, one-digit values", S::match_all, false, C},
  };
  return list;
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::standard: return "standard";
    case Mode::ruler: return "ruler";
    case Mode::helmet: return "helmet";
    case Mode::compact: return "compact";
  }
  return "?";
}

Mode parse_mode(std::string_view s) {
  for (Mode m : {Mode::standard, Mode::ruler, Mode::helmet, Mode::compact})
    if (s == mode_name(m)) return m;
  TOPK_CHECK(false, "unknown task mode '%.*s' (standard, ruler, helmet or compact)", int(s.size()),
             s.data());
  return Mode::standard;
}

Mode resolve_mode(const TaskInfo& t, Mode m) {
  if (m == Mode::standard) return t.standard;
  TOPK_CHECK(m == t.standard || m == Mode::compact,
             "task %s has no %s mode (its modes: standard = %s, compact)", t.name, mode_name(m),
             mode_name(t.standard));
  return m;
}

const TaskInfo* find_task(std::string_view name) {
  for (const auto& t : task_list())
    if (name == t.name) return &t;
  return nullptr;
}

static std::string names() {
  std::string s;
  for (const auto& t : task_list()) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

Example generate(std::string_view task, const Config& cfg, const Tokenizer& tok) {
  const TaskInfo* info = find_task(task);
  TOPK_CHECK(info, "unknown task '%.*s'; tasks: %s", int(task.size()), task.data(), names().c_str());
  TOPK_CHECK(cfg.depth < 0 || (cfg.depth <= 1.0 && !std::isnan(cfg.depth)),
             "task %s: depth must be in [0, 1] (or negative for random), got %g", info->name, cfg.depth);
  TOPK_CHECK(cfg.depth < 0 || info->has_depth,
             "task %s has no single needle to place: depth does not apply", info->name);
  TOPK_CHECK(cfg.length > 0 && cfg.length <= kMaxLength,
             "task %s: length must be a number of tokens in [1, %lld], got %lld", info->name,
             (long long)kMaxLength, (long long)cfg.length);
  Config c = cfg;
  c.mode = resolve_mode(*info, cfg.mode);
  for (const auto& sp : kNiah)
    if (task == sp.name) return generate_niah(sp, c, tok);
  if (task == "vt") return generate_vt(c, tok);
  if (task == "cwe") return generate_cwe(c, tok);
  if (task == "fwe") return generate_fwe(c, tok);
  if (task == "json_kv") return generate_json_kv(c, tok);
  if (task == "passkey") return generate_passkey(c, tok);
  if (task == "mqar") return generate_mqar(c, tok);
  if (task == "ar") return generate_ar(c, tok);
  TOPK_ASSERT(false);
  return {};
}

int64_t min_length(std::string_view task, const Tokenizer& tok, uint64_t seed, Mode mode) {
  // The smallest length that fits is found by bisection on the length itself.
  int64_t lo = 1, hi = 1;
  auto ok = [&](int64_t n) {
    try {
      Config c;
      c.length = n;
      c.seed = seed;
      c.mode = mode;
      generate(task, c, tok);
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  const TaskInfo* info = find_task(task);
  TOPK_CHECK(info, "unknown task '%.*s'; tasks: %s", int(task.size()), task.data(), names().c_str());
  resolve_mode(*info, mode);  // an error for a mode the task lacks
  while (!ok(hi)) {
    lo = hi;
    hi *= 2;
    TOPK_CHECK(hi < (int64_t(1) << 30), "task %.*s: no length fits", int(task.size()), task.data());
  }
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    (ok(mid) ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace topk::tasks
