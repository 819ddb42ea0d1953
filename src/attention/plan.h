// Argument validation shared by the attention ops: checks the public tensors once and builds
// the Params every backend reads.
#pragma once
#include <vector>

#include "attention/params.h"

namespace topk {

// Move-only: p.seqs points into seqs.
struct Plan {
  Plan() = default;
  Plan(Plan&&) = default;
  Plan(const Plan&) = delete;
  std::vector<SeqDesc> seqs;
  AttnParams p;
  Backend backend = Backend::cpu;
};

// q [B, T, Hq, D], k [B, S, Hkv, D], v like k (or empty): sizes, sequences and backend.
Plan plan_attention(const char* op, const TensorView& q, const TensorView& k,
                    const TensorView& v, const Seqs& seqs, const AttnOpts& opts);

// Checks one tensor. dims: expected sizes (-1: any). Float tensors: f32/bf16/f16 allowed;
// `contiguous` demands a packed layout, otherwise only the last dim must have stride 1.
void check_tensor(const char* op, const char* name, const TensorView& t,
                  std::initializer_list<int64_t> dims, bool is_float, bool contiguous,
                  Device device);
void check_dtype(const char* op, const char* name, const TensorView& t, DType want);

Rows rows_of(const TensorView& t);

// Keys of the longest sequence: index columns a selection needs follow it, not the packed rows.
int64_t longest_keys(const Plan& plan);

// Raises for a backend/op pair that has no implementation in this build.
[[noreturn]] void no_backend(const char* op, Backend b);

// Calls a CUDA entry point where this build has one; raises otherwise.
#ifdef TOPK_HAVE_CUDA
#define TOPK_CUDA_DISPATCH(op, call) call
#else
#define TOPK_CUDA_DISPATCH(op, call) no_backend(op, Backend::cuda)
#endif

}  // namespace topk
