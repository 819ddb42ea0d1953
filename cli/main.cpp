// topk command-line tool: one file per subcommand; this file only routes.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "cli/commands.h"
#include "topk/core.h"

static void usage() {
  std::printf(
      "topk: native top-k sparse attention\n\n"
      "usage: topk <command> [options]   (topk <command> --help for its options)\n\n"
      "commands:\n"
      "  bench attention   CPU attention benchmark: full vs exact top-k decode\n"
      "  bench train       training step time (CPU or GPU): full vs native top-k attention\n"
      "  bench generate    decode step time at long context: full vs top-k decoding\n"
      "  bench cuda        GPU decode and select benchmarks\n"
      "  data              print synthetic long-context task examples (--list for tasks)\n"
      "  demo              train (or reuse) a small retrieval model, then full vs top-k decoding\n"
      "  eval              accuracy, retrieval precision and entropy of attention policies\n"
      "  generate          stream a continuation from a model folder (top-k decoding)\n"
      "  train             train a model from a JSON run file\n"
      "  version           print the version and the backends of this build\n");
}

// libgomp reads OMP_WAIT_POLICY once, when it loads (before main). Its default keeps idle threads
// spinning for a while after each parallel region; on cores shared with other work the spinning
// takes the cores from the work (two tiny-copy trainings side by side on 2 cores: 85-100 s
// each for 100 steps, against 4-12 s with passive waiting; docs/reliability.md). OpenBLAS's
// worker threads do the same after each matrix product (2^28 cycles by default), so the
// attention ops that follow a product ran next to a spinning thread: a CPU training step at
// S = 2048 on 2 cores took 1083 ms, 767 ms with OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles).
// OpenBLAS also reads its variable when it loads. Unless the user set them, start again with
// threads of both pools that sleep when idle.
static void quiet_idle_threads_by_default(char** argv) {
  bool again = false;
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    again = true;
  }
  if (!std::getenv("OPENBLAS_THREAD_TIMEOUT")) {
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    again = true;
  }
  if (again) execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

int main(int argc, char** argv) {
  quiet_idle_threads_by_default(argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  try {
    if (cmd == "bench") return topk::cli::bench(argc - 1, argv + 1);
    if (cmd == "data") return topk::cli::data(argc - 1, argv + 1);
    if (cmd == "demo") return topk::cli::demo(argc - 1, argv + 1);
    if (cmd == "eval") return topk::cli::eval(argc - 1, argv + 1);
    if (cmd == "generate") return topk::cli::generate(argc - 1, argv + 1);
    if (cmd == "train") return topk::cli::train(argc - 1, argv + 1);
    if (cmd == "version") return topk::cli::version(argc - 1, argv + 1);
    std::fprintf(stderr, "topk: unknown command '%s'\n\n", cmd.c_str());
    usage();
    return 2;
  } catch (const topk::Error& e) {
    std::fprintf(stderr, "topk %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  } catch (const std::bad_alloc&) {  // sizes are checked before allocating; this is the backstop
    std::fprintf(stderr, "topk %s: error: out of memory\n", cmd.c_str());
    return 1;
  } catch (const std::exception& e) {  // a library's exception that no check turned into an Error
    std::fprintf(stderr, "topk %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
