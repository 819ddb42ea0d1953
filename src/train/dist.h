// Data-parallel training over the GPUs of one host: one process per GPU, each holding the whole
// model, optimizer state and gradient; NCCL sums the gradients (docs/engine.md, "Training on
// several GPUs").
//
// A step's global batch is what one device would take: grad_accum micro-batches, each generated
// whole on every rank from (seed, step, micro) alone. Each rank keeps its shard of every
// micro-batch (a contiguous run of whole sequences), scales its loss gradient by 1 / count of the
// whole global batch, and the sum of the ranks' gradients is then the one-device gradient. The
// sum runs in buckets over the flat gradient, each launched on a side stream as soon as the
// backward has finished the layers it holds, so the transfer overlaps the rest of the backward.
// Every rank then clips and steps from the same summed gradient: the weights stay identical,
// and the data order depends on the step alone, so a run resumes on any number of GPUs.
//
// The sharding and loss scaling (shard_batch, shard_grad) are plain host code shared with the
// CPU: a CPU test sums shard gradients in process where NCCL would sum them across GPUs.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/model.h"
#include "model/policy.h"

namespace topk {

// Who this process is, from the variables torchrun-style launchers set: RANK, WORLD_SIZE,
// LOCAL_RANK (default: RANK). world = 1 and rank = 0 when they are unset. `nonce` names the
// rendezvous file of one launch: TOPK_DIST_NONCE (set by `--gpus N`), else TORCHELASTIC_RUN_ID
// and MASTER_PORT, else "0".
struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  bool from_env = false;  // RANK or WORLD_SIZE was set
  std::string nonce = "0";
};
DistEnv dist_env();

// Rank `rank` of `world`'s shard of b: the sequences whose middle token falls in the rank's
// 1/world of the batch's tokens (a contiguous run of whole sequences; packed sequences never
// attend to each other, so a shard's forward is the batch's forward on those rows). A shard may
// be empty when b has fewer sequences than ranks. world == 1 returns b.
Batch shard_batch(const Batch& b, int rank, int world);

// A contiguous range of the flat gradient summed by one all-reduce. `layer`: the lowest layer
// the bucket holds; it is launched once the backward has finished that layer (layers run from
// L-1 down to 0). layer = -1: parameters outside the layers (embedding, final norm, LM head),
// finished only at the end of the backward.
struct GradBucket {
  int64_t offset = 0, numel = 0;
  int layer = -1;
};
// Buckets in launch order: adjacent layers from the top merged until a bucket holds at least
// bucket_bytes (f32), then the parameters outside the layers. Together they cover [0, numel)
// exactly once.
std::vector<GradBucket> grad_buckets(const Model& m, int64_t bucket_bytes);

struct NcclState;  // communicator, side stream, events (src/train/cuda/nccl.cpp)

struct Dist {
  int rank = 0, world = 1, local_rank = 0;
  std::vector<GradBucket> buckets;  // planned by dist_begin_step on the first step
  int64_t bucket_bytes = 25ll << 20;  // PyTorch DDP's default bucket size
  bool overlap = true;  // false: every bucket after the backward (to measure what overlap buys)
  size_t launched = 0;  // buckets launched in this step
  TensorView grad;      // this step's gradient
  std::shared_ptr<NcclState> nccl;
};

// True when this build can train on several GPUs (CUDA backend and NCCL's header were found).
bool dist_available();
// Joins the launch described by e: selects GPU e.local_rank, then all ranks meet through the
// file DIR/.nccl-id-NONCE (rank 0 writes NCCL's unique id there; a folder every rank sees) and
// build the communicator. Raises when the build has no NCCL or the library cannot be loaded.
Dist dist_open(const DistEnv& e, const std::string& dir);

// Starts a step's gradient sum over grad ([numel] f32 on the GPU).
void dist_begin_step(Dist& d, const Model& m, const TensorView& grad);
// The backward finished layer l's gradient: launch the buckets that are now complete.
void dist_layer_done(Dist& d, int l);
// Launches the buckets not yet launched; later work on the compute stream waits for all of them.
void dist_end_step(Dist& d);
// x summed over the ranks (host value; waits).
double dist_sum(Dist& d, double x);

// This rank's part of one step: zeroes grad, then forward, loss and backward of its shard of
// each micro-batch, accumulated into grad ([numel] f32 on the model's device), with the loss
// gradient scaled by 1 / count, count = the loss weight of the whole global batch (all ranks'
// shards). When d is given, its buckets are launched during the last micro-batch's backward
// (dist_begin_step ... dist_end_step). Returns this rank's sum of masked losses (not divided).
double shard_grad(const Model& m, const std::vector<Batch>& micro, double count, int rank,
                  int world, const AttnPolicy& pol, Acts& a, const TensorView& grad, Dist* d);

// Runs `topk ARGS...` (args[0] = the subcommand) as `gpus` processes of this host, with RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE and a fresh TOPK_DIST_NONCE in their environment;
// when one fails the others are stopped. Returns the first failure's exit code, else 0.
int dist_spawn(const std::vector<std::string>& args, int gpus);

// argv[1..argc) without `flag` and its value (to pass the rest to dist_spawn).
std::vector<std::string> args_without(int argc, char** argv, const std::string& flag);

}  // namespace topk
