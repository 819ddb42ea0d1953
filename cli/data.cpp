// topk data: print generated task examples, so that a user sees exactly what is tested.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "model/tokenizer.h"
#include "tasks/tasks.h"
#include "topk/core.h"

namespace topk::cli {

namespace {

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
  CLI::App app("Prints generated task examples, so that a user sees exactly what is tested.",
               "topk data");
  std::string task, depth, out, mode, model;
  tasks::Config cfg;
  cfg.length = -1;
  int n = 3;
  bool json = false, list = false, even = false;
  app.add_flag("--list", list, "list the tasks");
  add_text(app, "--task", task, "a task of --list")->type_name("NAME");
  add_int(app, "--length", cfg.length, 1, 1 << 24, "target tokens (in the tokenizer's tokens: "
          "the byte tokenizer's BOS + one per byte unless --model), counting the prompt, the answer "
          "prefix and the answer budget");
  add_int(app, "--n", n, 1, 1000000, "number of examples (example i uses seed S + i); default 3");
  add_seed(app, "--seed", cfg.seed, "default 0");
  add_text(app, "--depth", depth, "gold needle depth in [0, 1]; 'even': example i of K at "
           "i / (K - 1); default random")->type_name("F|even");
  add_text(app, "--mode", mode, "standard (default: the task's benchmark), ruler, helmet or "
           "compact (docs/tasks.md)")->type_name("M");
  add_int(app, "--answer-tokens", cfg.answer_tokens, 1, 1 << 24, "answer budget; default the "
          "mode's (RULER's, HELMET's, or the canonical answer's tokens in compact mode)");
  add_text(app, "--model", model, "count lengths in this model folder's tokenizer "
           "(tokenizer.json or topk's bytes) instead of the byte tokenizer")->type_name("DIR");
  app.add_flag("--json", json, "one JSON object per example per line");
  add_text(app, "--out", out, "write the JSON lines to PATH instead of printing")->type_name("PATH");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  even = depth == "even";
  if (!depth.empty() && !even) cfg.depth = parse_real(depth, "--depth", Range{0, 1});
  if (!mode.empty()) cfg.mode = tasks::parse_mode(mode);
  if (!out.empty()) {  // the examples are kept until written: about a byte per token, twice
    check_output_file(out, "--out");
    check_memory(2.0 * double(n) * double(std::max<int64_t>(cfg.length, 0)), "--n x --length");
  }
  tasks::Tokenizer tok = tasks::byte_tokenizer();
  if (!model.empty()) {  // the lengths a model of that folder will see, in its own tokens
    TOPK_CHECK(std::filesystem::is_directory(model), "--model %s is not a folder", model.c_str());
    Tokenizer mt = tokenizer_load(model);
    TOPK_CHECK(mt.has_text(), "--model %s has no tokenizer (tokenizer.json or topk_tokenizer in "
               "config.json)", model.c_str());
    tok = task_tokenizer(mt);
  }
  if (list) {
    std::printf("task format v%d; minimum length in tokens of tokenizer '%s' in brackets\n\n",
                tasks::kFormatVersion, tok.name.c_str());
    for (const auto& t : tasks::task_list())
      std::printf("  %-16s [%5lld]  %-17s  %s\n", t.name, (long long)tasks::min_length(t.name, tok),
                  tasks::scorer_name(t.scorer), t.summary);
    return 0;
  }
  TOPK_CHECK(!task.empty(), "--task is required (topk data --list shows the tasks)");
  TOPK_CHECK(cfg.length > 0, "--length must be a positive number of tokens (e.g. --length 4096)");
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
