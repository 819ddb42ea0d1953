#include <cstdio>

#include "cli/commands.h"

namespace topk::cli {

int bench_attention(int, char**) {
  std::printf("bench attention: not built yet\n");
  return 1;
}

}  // namespace topk::cli
