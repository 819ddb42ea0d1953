#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "topk/core.h"

namespace topk::cli {

int version(int argc, char** argv) {
  CLI::App app("Prints the version and the backends of this build.", "topk version");
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
#ifdef TOPK_HAVE_CUDA
  const char* cuda = cuda_available() ? "cuda (device present)" : "cuda (no device)";
#else
  const char* cuda = "no cuda";
#endif
  std::printf("topk 0.1.0  backends: ref, cpu, %s\n", cuda);
  return 0;
}

}  // namespace topk::cli
