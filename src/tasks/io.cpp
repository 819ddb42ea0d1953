// Examples as JSON lines (the layout `topk data --json` prints and --out writes).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tasks/tasks.h"
#include "topk/core.h"

namespace topk::tasks {

std::string to_json(const Example& e) {
  nlohmann::json j;
  j["task"] = e.task;
  j["version"] = e.version;
  j["mode"] = mode_name(e.mode);
  j["seed"] = e.seed;
  j["depth"] = e.depth;
  j["length"] = e.target_tokens;
  j["prompt_tokens"] = e.prompt_tokens;
  j["answer_tokens"] = e.answer_tokens;
  j["units"] = e.units;
  j["prompt"] = e.prompt;
  j["answer_prefix"] = e.answer_prefix;
  j["target"] = e.target;
  j["gold"] = e.gold;
  j["scorer"] = scorer_name(e.scorer);
  j["context"] = {e.context_begin, e.context_end};
  auto& n = j["needles"] = nlohmann::json::array();
  for (const auto& nd : e.needles)
    n.push_back({{"chars", {nd.char_begin, nd.char_end}}, {"tokens", {nd.token_begin, nd.token_end}}});
  return j.dump();
}

void write_jsonl(const std::string& path, const std::vector<Example>& examples) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    TOPK_CHECK(f.good(), "write_jsonl: cannot open %s for writing", tmp.c_str());
    for (const auto& e : examples) f << to_json(e) << '\n';
    f.flush();
    TOPK_CHECK(f.good(), "write_jsonl: writing %s failed (disk full?)", tmp.c_str());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  TOPK_CHECK(!ec, "write_jsonl: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(),
             ec.message().c_str());
}

}  // namespace topk::tasks
