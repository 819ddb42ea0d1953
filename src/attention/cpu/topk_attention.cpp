// CPU exact top-k attention (to be fused): scores -> select -> sparse attention.
#include <algorithm>

#include "attention/params.h"

namespace topk::cpu {

void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices, int64_t K) {
  int64_t B = 0;
  for (int i = 0; i < p.nseq; i++) B = std::max<int64_t>(B, p.seqs[i].batch + 1);
  std::vector<float> scores(size_t(B * p.Tq * p.Hq * p.Smax));
  attention_scores(p, scores.data());
  SelectParams sp;
  sp.a = p;
  sp.scores = scores.data();
  sp.out = indices;
  sp.Hsel = p.Hsel;
  sp.K = K;
  sp.sel = sel;
  topk_select(sp);
  sparse_forward(p);
}

}  // namespace topk::cpu
