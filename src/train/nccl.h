// NCCL behind plain functions (src/train/cuda/nccl.cpp), so that dist.cpp and the trainer carry
// no CUDA or NCCL types. Built when the CUDA backend is on and nccl.h was found
// (TOPK_HAVE_NCCL); otherwise dist.cpp's stubs raise.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace topk {

struct DistEnv;
struct NcclState;

// Selects the GPU, loads libnccl, meets the other ranks through the id file in dir and builds
// the communicator, a side stream and its events.
std::shared_ptr<NcclState> nccl_open(const DistEnv& e, const std::string& dir);
// Sums p[0, n) (f32, on the GPU) over the ranks in place, on the side stream, after the work
// queued so far on the compute stream (topk::cuda_stream()). Returns at once.
void nccl_all_reduce(NcclState& s, float* p, int64_t n);
// Later work on the compute stream waits for every all-reduce launched so far.
void nccl_wait(NcclState& s);
// x summed over the ranks; waits for the result.
double nccl_sum(NcclState& s, double x);

}  // namespace topk
