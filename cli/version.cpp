#include <cblas.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>

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
  // The thread pools and how their idle threads wait (cli/main.cpp sets both unless given).
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "(unset)";
  };
  std::printf("threads: OpenMP %d (OMP_WAIT_POLICY=%s), OpenBLAS %d (OPENBLAS_THREAD_TIMEOUT=%s)\n",
              omp_get_max_threads(), env("OMP_WAIT_POLICY"), openblas_get_num_threads(),
              env("OPENBLAS_THREAD_TIMEOUT"));
  return 0;
}

}  // namespace topk::cli
