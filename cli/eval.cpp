// topk eval: accuracy of attention policies on synthetic tasks, with retrieval precision,
// attention mass and entropy per layer (docs/eval.md).
#include <omp.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "eval/eval.h"

namespace topk::cli {

namespace {

void eval_usage(FILE* f) {
  std::fprintf(f,
      "usage: topk eval --model DIR --tasks T1,T2 --lengths N1,N2 --policy P [--policy P ...]\n"
      "                 [--samples 10] [--seed 0] [--mode M] [--prefill full|policy] [--per-head]\n"
      "                 [--out DIR] [--threads N] [--device D] [--batch N] [--quiet]\n\n"
      "  --model DIR        a model folder with a tokenizer (tokenizer.json or topk's bytes);\n"
      "                     task lengths count its tokens\n"
      "  --tasks LIST       tasks of topk data --list, comma-separated\n"
      "  --lengths LIST     target tokens per example, comma-separated\n"
      "  --policy P         an attention policy (repeat it), e.g. full, topk:ratio=0.05,\n"
      "                     topk:k=64,share=group, window:w=256,sink=4, oracle:k=64,precision=0.6\n"
      "  --policies LIST    several policies separated by ';' or spaces\n"
      "  --samples N        examples per task and length (example i uses seed S + i)\n"
      "  --mode M           task mode: standard (default), ruler, helmet, compact (docs/tasks.md)\n"
      "  --prefill MODE     full (default): prefill with full attention; policy: with the policy\n"
      "  --per-head         keep per-head statistics in results.json and layers.csv\n"
      "  --out DIR          write results.json, results.csv, layers.csv and PNG plots there\n"
      "  --threads N        CPU: examples decoded in parallel (default: all cores)\n"
      "  --device D         cpu, cuda or auto (default: cuda when a GPU is present)\n"
      "  --batch N          examples decoded together (default 16 on CUDA, 1 on the CPU)\n");
}

template <class T> T number(const std::string& flag, const std::string& s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  TOPK_CHECK(ec == std::errc() && p == s.data() + s.size() && !s.empty(),
             "%s expects a number, got '%s'", flag.c_str(), s.c_str());
  return v;
}

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

}  // namespace

int eval(int argc, char** argv) {
  eval::EvalOpts o;
  o.progress = true;
  std::string model, out, device = "auto";
  int threads = 0;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      TOPK_CHECK(i + 1 < argc, "%s needs a value (see topk eval --help)", a.c_str());
      return argv[++i];
    };
    if (a == "--help" || a == "-h") return eval_usage(stdout), 0;
    else if (a == "--model") model = next();
    else if (a == "--tasks") o.tasks = split(next(), ",");
    else if (a == "--lengths")
      for (auto& s : split(next(), ",")) o.lengths.push_back(number<int64_t>(a, s));
    else if (a == "--policy") o.policies.push_back(next());
    else if (a == "--policies")
      for (auto& s : split(next(), "; \t\n")) o.policies.push_back(s);
    else if (a == "--samples") o.samples = number<int>(a, next());
    else if (a == "--seed") o.seed = number<uint64_t>(a, next());
    else if (a == "--mode") o.mode = next();
    else if (a == "--prefill") {
      std::string v = next();
      TOPK_CHECK(v == "full" || v == "policy", "--prefill must be full or policy, got '%s'",
                 v.c_str());
      o.policy_prefill = v == "policy";
    } else if (a == "--per-head") o.per_head = true;
    else if (a == "--out") out = next();
    else if (a == "--threads") threads = number<int>(a, next());
    else if (a == "--quiet") o.progress = false;
    else if (a == "--device") device = next();
    else if (a == "--batch") o.batch = number<int>(a, next());
    else TOPK_CHECK(false, "unknown option '%s' (see topk eval --help)", a.c_str());
  }
  TOPK_CHECK(!model.empty(), "--model DIR is required (see topk eval --help)");
  eval::validate(o);
  TOPK_CHECK(std::filesystem::is_directory(model), "model folder '%s' does not exist",
             model.c_str());
  TOPK_CHECK(o.batch >= 0, "--batch must be positive, got %d", o.batch);
  Device dev = parse_device(device);
  Model m = model_load(model);
  model_to(m, dev, false);
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
