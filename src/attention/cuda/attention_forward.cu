// Full attention forward on CUDA: split-KV (flash-decoding) kernel + combine, in attend.cu.
// Fast for decode (few query rows); correct for every shape (T > 1, causal, packed).
#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

void attention_forward(const AttnParams& p) {
  SeqTable st = upload_seqs(p);
  launch_attend(p, st, 0, st.rows, nullptr, 0, 0, nullptr);
}

}  // namespace topk::cuda
