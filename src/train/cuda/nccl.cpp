// NCCL for data-parallel training (train/dist.h, train/nccl.h).
//
// libnccl is opened at run time (dlopen), not linked: the build needs only nccl.h, a binary that
// never trains on several GPUs runs where no libnccl is installed, and one that does can use any
// libnccl.so.2 (TOPK_NCCL_LIBRARY names it, e.g. the copy Python's NCCL package ships).
//
// Ranks meet through a file: rank 0 writes NCCL's unique id to DIR/.nccl-id-NONCE (atomically:
// a temporary name, then rename), the others poll for it; rank 0 deletes it once the
// communicator is built, when every rank has read it. No extra dependency, no port to agree on;
// the folder must be one that every rank sees (the run folder, on one host).
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>

#include "core/cuda_check.cuh"
#include "core/device_mem.h"
#include "model/model.h"
#include "train/dist.h"
#include "train/nccl.h"

namespace topk {
namespace {

// The NCCL entry points used here, typed from nccl.h.
struct NcclLib {
  decltype(&ncclGetUniqueId) get_unique_id;
  decltype(&ncclCommInitRank) init_rank;
  decltype(&ncclAllReduce) all_reduce;
  decltype(&ncclCommDestroy) destroy;
  decltype(&ncclCommAbort) abort;
  decltype(&ncclGetErrorString) error_string;
};

const NcclLib& lib() {
  static const NcclLib l = [] {
    std::string tried;
    void* h = nullptr;
    const char* env = std::getenv("TOPK_NCCL_LIBRARY");
    for (const char* name : {env, "libnccl.so.2", "libnccl.so", TOPK_NCCL_PATH}) {
      if (!name || !*name) continue;
      if ((h = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
      tried += std::string(tried.empty() ? "" : ", ") + name;
    }
    TOPK_CHECK(h, "cannot load NCCL (tried %s): install libnccl2, or set TOPK_NCCL_LIBRARY to "
               "the path of a libnccl.so.2", tried.c_str());
    auto sym = [&](const char* s) {
      void* p = dlsym(h, s);
      TOPK_CHECK(p, "the NCCL library has no %s (too old?)", s);
      return p;
    };
    NcclLib n;
    n.get_unique_id = reinterpret_cast<decltype(n.get_unique_id)>(sym("ncclGetUniqueId"));
    n.init_rank = reinterpret_cast<decltype(n.init_rank)>(sym("ncclCommInitRank"));
    n.all_reduce = reinterpret_cast<decltype(n.all_reduce)>(sym("ncclAllReduce"));
    n.destroy = reinterpret_cast<decltype(n.destroy)>(sym("ncclCommDestroy"));
    n.abort = reinterpret_cast<decltype(n.abort)>(sym("ncclCommAbort"));
    n.error_string = reinterpret_cast<decltype(n.error_string)>(sym("ncclGetErrorString"));
    return n;
  }();
  return l;
}

#define TOPK_NCCL(call)                                                                     \
  do {                                                                                      \
    ncclResult_t r_ = (call);                                                               \
    TOPK_CHECK(r_ == ncclSuccess, "NCCL error at %s:%d: %s (%s)", __FILE__, __LINE__,       \
               lib().error_string(r_), #call);                                              \
  } while (0)

cudaStream_t compute() { return static_cast<cudaStream_t>(cuda_stream()); }

// The unique id through the run folder (see the top of this file).
ncclUniqueId exchange_id(const DistEnv& e, const std::string& dir) {
  ncclUniqueId id;
  const std::string path = dir + "/.nccl-id-" + e.nonce, tmp = path + ".tmp";
  if (e.rank == 0) {
    TOPK_NCCL(lib().get_unique_id(&id));
    make_dirs(dir);
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    TOPK_CHECK(f, "rank 0: cannot create %s", tmp.c_str());
    const bool ok = std::fwrite(&id, sizeof id, 1, f) == 1;
    TOPK_CHECK(std::fclose(f) == 0 && ok && std::rename(tmp.c_str(), path.c_str()) == 0,
               "rank 0: cannot write %s", path.c_str());
    return id;
  }
  const char* t = std::getenv("TOPK_DIST_TIMEOUT");
  const double limit = t && *t ? std::atof(t) : 600.0;
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
      const bool ok = std::fread(&id, sizeof id, 1, f) == 1;
      std::fclose(f);
      if (ok) return id;
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    TOPK_CHECK(waited < limit, "rank %d: rank 0 wrote no %s within %.0f s (TOPK_DIST_TIMEOUT); "
               "is rank 0 running with the same run folder?", e.rank, path.c_str(), limit);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

struct NcclState {
  ncclComm_t comm = nullptr;
  cudaStream_t side = nullptr;  // the all-reduces run here, beside the backward
  cudaEvent_t ready = nullptr;  // compute stream -> side stream, before each bucket
  cudaEvent_t done = nullptr;   // side stream -> compute stream, at the end of a step
  double* scalar = nullptr;     // device room for dist_sum
};

static void close_state(NcclState* s) {
  // Mid-error (unwinding), a peer may be gone: abort rather than wait for it.
  if (s->comm) (std::uncaught_exceptions() ? lib().abort : lib().destroy)(s->comm);
  if (s->scalar) cudaFree(s->scalar);
  if (s->ready) cudaEventDestroy(s->ready);
  if (s->done) cudaEventDestroy(s->done);
  if (s->side) cudaStreamDestroy(s->side);
  delete s;
}

std::shared_ptr<NcclState> nccl_open(const DistEnv& e, const std::string& dir) {
  const int n = device_count();
  TOPK_CHECK(e.local_rank < n, "rank %d: LOCAL_RANK %d, but this host shows %d GPU%s", e.rank,
             e.local_rank, n, n == 1 ? "" : "s");
  TOPK_CUDA(cudaSetDevice(e.local_rank));
  lib();  // a missing library fails here, before any rank waits for another
  const ncclUniqueId id = exchange_id(e, dir);
  std::shared_ptr<NcclState> s(new NcclState, close_state);
  TOPK_NCCL(lib().init_rank(&s->comm, e.world, id, e.rank));
  if (e.rank == 0) std::remove((dir + "/.nccl-id-" + e.nonce).c_str());
  // Non-blocking: the side stream must not wait for the legacy default stream, which the
  // compute work may run on.
  TOPK_CUDA(cudaStreamCreateWithFlags(&s->side, cudaStreamNonBlocking));
  TOPK_CUDA(cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming));
  TOPK_CUDA(cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming));
  TOPK_CUDA(cudaMalloc(&s->scalar, sizeof(double)));
  return s;
}

void nccl_all_reduce(NcclState& s, float* p, int64_t n) {
  // A wait on an event takes its latest record, so one event serves every bucket.
  TOPK_CUDA(cudaEventRecord(s.ready, compute()));
  TOPK_CUDA(cudaStreamWaitEvent(s.side, s.ready, 0));
  TOPK_NCCL(lib().all_reduce(p, p, size_t(n), ncclFloat32, ncclSum, s.comm, s.side));
}

void nccl_wait(NcclState& s) {
  TOPK_CUDA(cudaEventRecord(s.done, s.side));
  TOPK_CUDA(cudaStreamWaitEvent(compute(), s.done, 0));
}

double nccl_sum(NcclState& s, double x) {
  TOPK_CUDA(cudaMemcpyAsync(s.scalar, &x, sizeof x, cudaMemcpyHostToDevice, s.side));
  TOPK_NCCL(lib().all_reduce(s.scalar, s.scalar, 1, ncclFloat64, ncclSum, s.comm, s.side));
  TOPK_CUDA(cudaMemcpyAsync(&x, s.scalar, sizeof x, cudaMemcpyDeviceToHost, s.side));
  TOPK_CUDA(cudaStreamSynchronize(s.side));
  return x;
}

}  // namespace topk
