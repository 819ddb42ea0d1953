// Full attention forward on CUDA. Prefill and training (a sequence with at least
// kFlashMinRows query rows, bf16 or f16 q, k, v, D 64, 128 or 256): the FlashAttention-2 kernel of
// flash_forward.cu, which reads each K/V tile once for 128 query rows. Otherwise (decode, f32
// inputs, mixed dtypes): the split-KV kernels of attend.cu / attend_mma.cu, a block per query
// row, fast when rows are few and correct for every shape (T > 1, causal, packed).
#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

namespace {
// Below this many rows per sequence a 128-row tile is mostly empty and the per-row split-KV
// kernels, which split the keys over more blocks, keep more SMs busy.
constexpr int64_t kFlashMinRows = 16;
}  // namespace

void attention_forward(const AttnParams& p) {
  SeqTable st = upload_seqs(p);
  if (st.max_T >= kFlashMinRows && launch_flash_forward(p, st)) return;
  launch_attend(p, st, 0, st.rows, nullptr, 0, 0, nullptr);
}

}  // namespace topk::cuda
