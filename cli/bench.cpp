#include <cstdio>
#include <cstring>

#include "cli/commands.h"
#include "topk/core.h"

namespace topk::cli {

int bench_attention(int argc, char** argv);
int bench_cuda(int argc, char** argv);
int bench_train(int argc, char** argv);
int bench_generate(int argc, char** argv);

int bench(int argc, char** argv) {
  if (argc >= 2 && !std::strcmp(argv[1], "attention")) return bench_attention(argc - 1, argv + 1);
  if (argc >= 2 && !std::strcmp(argv[1], "cuda")) return bench_cuda(argc - 1, argv + 1);
  if (argc >= 2 && !std::strcmp(argv[1], "train")) return bench_train(argc - 1, argv + 1);
  if (argc >= 2 && !std::strcmp(argv[1], "generate")) return bench_generate(argc - 1, argv + 1);
  std::fprintf(stderr,
               "usage: topk bench attention [--json] [options]   (CPU decode)\n"
               "       topk bench train [--json] [options]       (training steps, CPU or GPU)\n"
               "       topk bench generate [--json] [options]    (decode steps at long context)\n"
               "       topk bench cuda [--json] [options]        (GPU decode and select)\n");
  return 2;
}

}  // namespace topk::cli
