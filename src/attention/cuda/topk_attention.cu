// Exact top-k attention on CUDA: scores (each K row read once for its whole group) ->
// exact radix selection -> sparse attention over the chosen keys that reuses the stored
// scores, so K is read once and only the chosen V rows are gathered. Rows go in ranges whose
// score buffer stays under ~1 GiB, so causal prefill of any length works (slowly: the score
// pass is the plain split-KV path).
#include <algorithm>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"

namespace topk::cuda {

void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices,
                            int64_t K) {
  SeqTable st = upload_seqs(p);
  if (st.rows == 0) return;
  const bool shared = sel.share_group && p.group() > 1;
  const int Hsel = p.Hsel;
  const int64_t per_row = int64_t(p.Hq) * p.Smax * 4;
  const int64_t rank_row = shared ? int64_t(p.Hkv) * p.Smax * 4 : 0;
  const int64_t step = std::max<int64_t>(1, (int64_t(1) << 30) / std::max<int64_t>(1, per_row + rank_row));
  for (int64_t r0 = 0; r0 < st.rows; r0 += step) {
    int64_t r1 = std::min(st.rows, r0 + step);
    float* scores = static_cast<float*>(workspace(kWsScores, size_t((r1 - r0) * per_row)));
    launch_scores(p, st, r0, r1, scores, true, false);
    if (shared) {
      float* rank = static_cast<float*>(workspace(kWsRank, size_t((r1 - r0) * rank_row)));
      launch_group_rank(p, st, r0, r1, scores, rank);
      launch_select(p, st, r0, r1, rank, true, Hsel, sel, indices, K);
    } else {
      launch_select(p, st, r0, r1, scores, true, Hsel, sel, indices, K);
    }
    launch_attend(p, st, r0, r1, indices, Hsel, K, scores);
  }
}

}  // namespace topk::cuda
