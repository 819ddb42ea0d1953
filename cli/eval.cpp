// topk eval: accuracy of attention policies on synthetic tasks, with retrieval precision,
// attention mass and entropy per layer (docs/eval.md).
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "eval/eval.h"

namespace topk::cli {

namespace {

std::vector<std::string> split(const std::string& s, const char* seps) {
  std::vector<std::string> r;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find_first_of(seps, i);
    if (j == std::string::npos) j = s.size();
    if (j > i) r.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return r;
}

// Positions past the model's max_position_embeddings were never trained: say so before the run.
void warn_past_positions(const Model& m, const std::vector<int64_t>& lengths) {
  for (int64_t len : lengths)
    if (len > m.cfg.max_pos)
      std::fprintf(stderr, "topk eval: warning: length %lld is past the model's %d positions "
                   "(max_position_embeddings); scores there measure extrapolation, not the "
                   "model's trained range\n", (long long)len, m.cfg.max_pos);
}

}  // namespace

int eval(int argc, char** argv) {
  CLI::App app("Accuracy, retrieval precision and entropy of attention policies on the synthetic "
               "tasks (docs/eval.md).", "topk eval");
  eval::EvalOpts o;
  std::string model, out, tasks, lengths, policies, prefill = "full", device = "auto";
  int threads = 0;
  bool quiet = false;
  add_text(app, "--model", model, "a model folder with a tokenizer (tokenizer.json or topk's "
           "bytes); task lengths count its tokens")->type_name("DIR");
  add_text(app, "--tasks", tasks, "tasks of topk data --list, comma-separated")->type_name("T1,T2");
  add_text(app, "--lengths", lengths, "target tokens per example, comma-separated")->type_name("N1,N2");
  app.add_option("--policy", o.policies, "an attention policy (repeat it), e.g. full, "
                 "topk:ratio=0.05, topk:k=64,share=group, window:w=256,sink=4, "
                 "oracle:k=64,precision=0.6")->allow_extra_args(false)->type_name("P");
  add_text(app, "--policies", policies, "several policies separated by ';' or spaces");
  add_int(app, "--samples", o.samples, 1, 1000000, "examples per task and length (example i "
          "uses seed S + i; default 10)");
  add_seed(app, "--seed", o.seed, "seed of the first example (default 0)");
  add_text(app, "--mode", o.mode, "task mode: standard (default), ruler, helmet, compact "
           "(docs/tasks.md)")->type_name("M");
  add_text(app, "--prefill", prefill, "full (default): prefill with full attention; policy: with "
           "the policy")->check(CLI::IsMember({"full", "policy"}));
  app.add_flag("--per-head", o.per_head, "keep per-head statistics in results.json and layers.csv");
  app.add_flag("--indexer-fp8", o.indexer_fp8, "keep the Lightning Indexer's keys in the KV cache "
               "as FP8 E4M3 with a scale per key (models with an indexer; docs/semantics.md)");
  add_text(app, "--out", out, "write results.json, results.csv, layers.csv and PNG plots there")
      ->type_name("DIR");
  add_threads(app, threads);
  add_device(app, device);
  add_int(app, "--batch", o.batch, 1, 1 << 16, "examples decoded together (default 16 on CUDA, 1 "
          "on the CPU)");
  app.add_flag("--quiet", quiet, "no progress line");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  o.tasks = split(tasks, ",");
  if (!lengths.empty())
    for (int64_t n : parse_int_list(lengths, "--lengths", 1, 1 << 24)) o.lengths.push_back(n);
  for (auto& p : split(policies, "; \t\n")) o.policies.push_back(p);
  o.policy_prefill = prefill == "policy";
  o.progress = !quiet;
  TOPK_CHECK(!model.empty(), "--model DIR is required (see topk eval --help)");
  eval::validate(o);
  TOPK_CHECK(std::filesystem::is_directory(model), "model folder '%s' does not exist",
             model.c_str());
  TOPK_CHECK(out.empty() || !std::filesystem::exists(out) || std::filesystem::is_directory(out),
             "--out %s exists and is not a folder", out.c_str());
  Device dev = parse_device(device);
  Model m = model_load(model);
  model_to(m, dev, false);
  warn_past_positions(m, o.lengths);
  if (threads > 0) omp_set_num_threads(threads);
  eval::Report r = eval::run(m, o);
  r.model = model;
  std::fputs(eval::format_table(r).c_str(), stdout);
  std::printf("%zu cells, %d examples each, %.1f s\n", r.cells.size(), o.samples, r.seconds);
  if (!out.empty()) {
    make_dirs(out);
    for (const auto& n : eval::write_outputs(r, out)) std::printf("%s\n", n.c_str());
  }
  return 0;
}

}  // namespace topk::cli
