#include <cstdio>

#include "cli/commands.h"
#include "topk/core.h"

namespace topk::cli {

int version(int, char**) {
#ifdef TOPK_HAVE_CUDA
  const char* cuda = cuda_available() ? "cuda (device present)" : "cuda (no device)";
#else
  const char* cuda = "no cuda";
#endif
  std::printf("topk 0.1.0  backends: ref, cpu, %s\n", cuda);
  return 0;
}

}  // namespace topk::cli
