// topk data: print generated task examples, so that a user sees exactly what is tested.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "tasks/tasks.h"
#include "topk/core.h"

namespace topk::cli {

namespace {

void data_usage(FILE* f) {
  std::fprintf(f,
               "usage: topk data --list\n"
               "       topk data --task NAME --length N [--n 3] [--seed S] [--depth F]\n"
               "                 [--mode M] [--answer-tokens N] [--json] [--out PATH]\n\n"
               "  --task NAME         a task of --list\n"
               "  --length N          target tokens (byte tokenizer: BOS + one per byte), counting\n"
               "                      the prompt, the answer prefix and the answer budget\n"
               "  --n K               number of examples (example i uses seed S + i); default 3\n"
               "  --seed S            default 0\n"
               "  --depth F|even      gold needle depth in [0, 1]; 'even': example i of K at\n"
               "                      i / (K - 1); default random\n"
               "  --mode M            standard (default: the task's benchmark), ruler, helmet or\n"
               "                      compact (docs/tasks.md)\n"
               "  --answer-tokens N   answer budget; default the mode's (RULER's, HELMET's, or the\n"
               "                      canonical answer's tokens in compact mode)\n"
               "  --json              one JSON object per example per line\n"
               "  --out PATH          write the JSON lines to PATH instead of printing\n");
}

template <class T> T parse_num(const char* flag, const char* s) {
  T v{};
  const char* end = s + std::strlen(s);
  auto [p, ec] = std::from_chars(s, end, v);
  TOPK_CHECK(ec == std::errc() && p == end && p != s, "%s expects a number, got '%s'", flag, s);
  return v;
}

void print_text(const tasks::Example& e, int i) {
  std::printf("=== %s #%d  seed %llu  format v%d  scorer %s\n", e.task.c_str(), i,
              (unsigned long long)e.seed, e.version, tasks::scorer_name(e.scorer));
  std::printf("length %lld: prompt+prefix %lld + answer %lld = %lld tokens; haystack units %lld\n",
              (long long)e.target_tokens, (long long)e.prompt_tokens, (long long)e.answer_tokens,
              (long long)e.total_tokens(), (long long)e.units);
  std::printf("--- prompt\n%s\n--- answer prefix\n%s\n", e.prompt.c_str(), e.answer_prefix.c_str());
  std::printf("--- target\n%s\n--- gold:", e.target.c_str());
  for (const auto& g : e.gold) std::printf(" \"%s\"", g.c_str());
  std::printf("\n--- context bytes [%lld, %lld); needles (bytes / tokens):", (long long)e.context_begin,
              (long long)e.context_end);
  size_t shown = std::min<size_t>(e.needles.size(), 8);
  for (size_t k = 0; k < shown; k++)
    std::printf(" [%lld,%lld)/[%lld,%lld)", (long long)e.needles[k].char_begin,
                (long long)e.needles[k].char_end, (long long)e.needles[k].token_begin,
                (long long)e.needles[k].token_end);
  if (shown < e.needles.size()) std::printf(" ... (%zu in all)", e.needles.size());
  std::printf("\n\n");
}

}  // namespace

int data(int argc, char** argv) {
  std::string task;
  tasks::Config cfg;
  cfg.length = -1;
  int n = 3;
  bool json = false, list = false, even = false;
  std::string out;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      TOPK_CHECK(i + 1 < argc, "%s needs a value (see topk data --help)", a.c_str());
      return argv[++i];
    };
    if (a == "--help" || a == "-h") return data_usage(stdout), 0;
    else if (a == "--list") list = true;
    else if (a == "--json") json = true;
    else if (a == "--task") task = value();
    else if (a == "--length") cfg.length = parse_num<int64_t>("--length", value());
    else if (a == "--n") n = parse_num<int>("--n", value());
    else if (a == "--seed") cfg.seed = parse_num<uint64_t>("--seed", value());
    else if (a == "--depth") {
      const char* v = value();
      if (!std::strcmp(v, "even")) even = true;
      else cfg.depth = parse_num<double>("--depth", v);
    } else if (a == "--out") out = value();
    else if (a == "--answer-tokens") cfg.answer_tokens = parse_num<int64_t>("--answer-tokens", value());
    else if (a == "--mode") cfg.mode = tasks::parse_mode(value());
    else TOPK_CHECK(false, "unknown option '%s' (see topk data --help)", a.c_str());
  }
  tasks::Tokenizer tok = tasks::byte_tokenizer();
  if (list) {
    std::printf("task format v%d; minimum length with the byte tokenizer in brackets\n\n",
                tasks::kFormatVersion);
    for (const auto& t : tasks::task_list())
      std::printf("  %-16s [%5lld]  %-17s  %s\n", t.name, (long long)tasks::min_length(t.name, tok),
                  tasks::scorer_name(t.scorer), t.summary);
    return 0;
  }
  TOPK_CHECK(!task.empty(), "--task is required (topk data --list shows the tasks)");
  TOPK_CHECK(cfg.length > 0, "--length must be a positive number of tokens (e.g. --length 4096)");
  TOPK_CHECK(n > 0, "--n must be positive, got %d", n);
  TOPK_CHECK(tasks::find_task(task), "unknown task '%s' (topk data --list shows the tasks)",
             task.c_str());
  uint64_t seed0 = cfg.seed;
  std::vector<tasks::Example> all;
  for (int i = 0; i < n; i++) {
    cfg.seed = seed0 + uint64_t(i);
    if (even) cfg.depth = n > 1 ? double(i) / double(n - 1) : 0.5;
    tasks::Example e = tasks::generate(task, cfg, tok);
    if (!out.empty()) all.push_back(std::move(e));
    else if (json) std::printf("%s\n", tasks::to_json(e).c_str());
    else print_text(e, i);
  }
  if (!out.empty()) {
    tasks::write_jsonl(out, all);
    std::fprintf(stderr, "wrote %d %s examples to %s\n", n, task.c_str(), out.c_str());
  }
  return 0;
}

}  // namespace topk::cli
