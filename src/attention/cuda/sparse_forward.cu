// Sparse attention forward over given key indices on CUDA (kernel in attend.cu): per-head
// lists run one head per block; group-shared lists run the group's heads together.
#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

void sparse_forward(const AttnParams& p) {
  SeqTable st = upload_seqs(p);
  launch_attend(p, st, 0, st.rows, p.idx, p.Hsel, p.K, nullptr);
}

}  // namespace topk::cuda
