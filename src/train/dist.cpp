#include "train/dist.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>

#include "model/ops.h"
#include "model/views.h"
#include "train/nccl.h"

namespace topk {

static int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  TOPK_CHECK(*end == 0 && x >= 0 && x < (1 << 20), "environment variable %s=%s is not a rank "
             "count", name, v);
  return int(x);
}

DistEnv dist_env() {
  DistEnv e;
  e.from_env = std::getenv("RANK") || std::getenv("WORLD_SIZE");
  e.rank = env_int("RANK", 0);
  e.world = env_int("WORLD_SIZE", 1);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  TOPK_CHECK(e.world >= 1 && e.rank < e.world, "RANK=%d with WORLD_SIZE=%d: need 0 <= RANK < "
             "WORLD_SIZE", e.rank, e.world);
  if (const char* n = std::getenv("TOPK_DIST_NONCE"); n && *n) {
    e.nonce = n;
  } else if (e.from_env) {
    const char* id = std::getenv("TORCHELASTIC_RUN_ID");
    const char* port = std::getenv("MASTER_PORT");
    e.nonce = std::string(id ? id : "run") + "-" + (port ? port : "0");
  }
  for (char& c : e.nonce)  // the nonce is part of a file name
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return e;
}

Batch shard_batch(const Batch& b, int rank, int world) {
  TOPK_CHECK(world >= 1 && rank >= 0 && rank < world, "shard_batch: rank %d of %d", rank, world);
  if (world == 1) return b;
  const int64_t total = b.size();
  const size_t nseq = b.cu_seqlens.size() - 1;
  // Sequence s goes to the rank whose share of the tokens holds its middle: the rule is
  // monotone in s, so each rank's sequences are contiguous, and it depends on b alone.
  auto owner = [&](size_t s) {
    const int64_t mid2 = int64_t(b.cu_seqlens[s]) + b.cu_seqlens[s + 1];  // twice the middle
    return int(std::min<int64_t>(world - 1, mid2 * world / (2 * total)));
  };
  size_t s0 = 0;
  while (s0 < nseq && owner(s0) < rank) s0++;
  size_t s1 = s0;
  while (s1 < nseq && owner(s1) == rank) s1++;
  Batch r;
  const size_t a = size_t(b.cu_seqlens[s0]), z = size_t(b.cu_seqlens[s1]);
  auto cut = [&](const auto& v) { return std::vector(v.begin() + long(a), v.begin() + long(z)); };
  r.tokens = cut(b.tokens);
  r.targets = cut(b.targets);
  if (!b.mask.empty()) r.mask = cut(b.mask);
  r.pos = cut(b.pos);
  for (size_t s = s0; s <= s1; s++) r.cu_seqlens.push_back(b.cu_seqlens[s] - int32_t(a));
  return r;
}

std::vector<GradBucket> grad_buckets(const Model& m, int64_t bucket_bytes) {
  const int L = int(m.layer.size());
  TOPK_CHECK(L > 0, "grad_buckets: the model has no layers");
  // Layer l's parameters are the run [start(l), start(l+1)) of the flat vector (model_create
  // lays them out layer by layer, between the embedding and the final norm).
  auto start = [&](int l) { return int64_t(l < L ? m.layer[size_t(l)].in_norm : m.final_norm); };
  for (int l = 0; l < L; l++) TOPK_CHECK(start(l) < start(l + 1), "grad_buckets: layer %d's "
                                         "parameters are not contiguous", l);
  std::vector<GradBucket> r;
  int top = L;  // layers [lo, top) not yet in a bucket
  for (int lo = L - 1; lo >= 0; lo--) {
    if ((start(top) - start(lo)) * 4 >= bucket_bytes || lo == 0) {
      r.push_back({start(lo), start(top) - start(lo), lo});
      top = lo;
    }
  }
  if (start(0) > 0) r.push_back({0, start(0), -1});
  if (start(L) < m.numel) r.push_back({start(L), m.numel - start(L), -1});
  return r;
}

static void launch(Dist& d, const GradBucket& b) {
  nccl_all_reduce(*d.nccl, static_cast<float*>(view_at(d.grad, b.offset, {b.numel}).data), b.numel);
}

void dist_begin_step(Dist& d, const Model& m, const TensorView& grad) {
  TOPK_CHECK(grad.device == Device::cuda && grad.dtype == DType::f32 && grad.numel() == m.numel,
             "dist_begin_step: the gradient %s must be f32 [%lld] on the GPU", grad.str().c_str(),
             (long long)m.numel);
  if (d.buckets.empty()) d.buckets = grad_buckets(m, d.bucket_bytes);
  d.grad = grad;
  d.launched = 0;
}

void dist_layer_done(Dist& d, int l) {
  if (!d.overlap) return;
  while (d.launched < d.buckets.size() && d.buckets[d.launched].layer >= l && d.buckets[d.launched].layer >= 0)
    launch(d, d.buckets[d.launched++]);
}

void dist_end_step(Dist& d) {
  while (d.launched < d.buckets.size()) launch(d, d.buckets[d.launched++]);
  nccl_wait(*d.nccl);
}

double dist_sum(Dist& d, double x) { return d.world == 1 && !d.nccl ? x : nccl_sum(*d.nccl, x); }

double shard_grad(const Model& m, const std::vector<Batch>& micro, double count, int rank,
                  int world, const AttnPolicy& pol, Acts& a, const TensorView& grad, Dist* d) {
  TOPK_CHECK(count > 0, "shard_grad: the global batch has no token in the loss");
  ops::zero(grad);
  if (d) dist_begin_step(*d, m, grad);
  double loss = 0;
  for (size_t i = 0; i < micro.size(); i++) {
    const Batch shard = shard_batch(micro[i], rank, world);
    if (shard.size() == 0) continue;  // this rank's gradient gets nothing from this micro-batch
    // Only the last micro-batch finishes each layer's gradient: hook the sum there.
    if (d && i + 1 == micro.size()) a.layer_done = [d](int l) { dist_layer_done(*d, l); };
    model_forward(m, shard, pol, a);
    loss += model_loss(m, shard, a, float(1.0 / count));
    model_backward(m, shard, pol, a, grad);
    a.layer_done = nullptr;
  }
  if (d) dist_end_step(*d);
  return loss;
}

std::vector<std::string> args_without(int argc, char** argv, const std::string& flag) {
  std::vector<std::string> r;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == flag) i++;
    else if (a.rfind(flag + "=", 0) != 0) r.push_back(a);  // also drops --flag=N
  }
  return r;
}

int dist_spawn(const std::vector<std::string>& args, int gpus) {
  TOPK_CHECK(gpus >= 1, "--gpus must be at least 1, got %d", gpus);
  TOPK_CHECK(!std::getenv("RANK") && !std::getenv("WORLD_SIZE"), "--gpus starts its own ranks; "
             "under a launcher that sets RANK and WORLD_SIZE (torchrun), leave --gpus out");
  // A fresh nonce per launch: the rendezvous file of an earlier launch is never read.
  const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
  const std::string nonce = std::to_string(getpid()) + "_" + std::to_string(t);
  std::vector<pid_t> pids;
  std::fflush(nullptr);  // or the children would repeat what is still buffered
  for (int r = 0; r < gpus; r++) {
    pid_t p = fork();
    TOPK_CHECK(p >= 0, "--gpus: fork failed for rank %d", r);
    if (p == 0) {
      for (auto [k, v] : {std::pair<const char*, std::string>{"RANK", std::to_string(r)},
                          {"LOCAL_RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(gpus)},
                          {"LOCAL_WORLD_SIZE", std::to_string(gpus)}, {"TOPK_DIST_NONCE", nonce}})
        setenv(k, v.c_str(), 1);
      std::vector<char*> av = {const_cast<char*>("topk")};
      for (const std::string& s : args) av.push_back(const_cast<char*>(s.c_str()));
      av.push_back(nullptr);
      execv("/proc/self/exe", av.data());
      std::perror("topk: exec of a rank failed");
      _exit(127);
    }
    pids.push_back(p);
  }
  // Wait for all; the first failure stops the rest (they would wait forever in a collective).
  int code = 0;
  for (size_t left = pids.size(); left > 0; left--) {
    int st = 0;
    pid_t p = wait(&st);
    if (p < 0) break;
    for (pid_t& q : pids)
      if (q == p) q = 0;
    const int c = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (c != 0 && code == 0) {
      code = c;
      for (pid_t q : pids)
        if (q > 0) kill(q, SIGTERM);
    }
  }
  return code;
}

#ifdef TOPK_HAVE_NCCL
bool dist_available() { return true; }
#else
bool dist_available() { return false; }
static Error no_nccl() {
  return Error("training on several GPUs needs NCCL, and this build has none (it needs the CUDA "
               "backend and nccl.h when configured; see docs/engine.md)");
}
std::shared_ptr<NcclState> nccl_open(const DistEnv&, const std::string&) { throw no_nccl(); }
void nccl_all_reduce(NcclState&, float*, int64_t) { throw no_nccl(); }
void nccl_wait(NcclState&) { throw no_nccl(); }
double nccl_sum(NcclState&, double) { throw no_nccl(); }
#endif

Dist dist_open(const DistEnv& e, const std::string& dir) {
  Dist d;
  d.rank = e.rank, d.world = e.world, d.local_rank = e.local_rank;
  d.nccl = nccl_open(e, dir);
  return d;
}

}  // namespace topk
