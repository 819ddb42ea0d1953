// The arguments of the kernels that select and attend over stored score rows (a cluster of
// blocks per (row, query head) in stored_select_attend.cu, a warp per pair in
// stored_select_attend_warps.cu), decoded once from the call.
#pragma once
#include "attention/cuda/common.cuh"

namespace topk::cuda {

struct StoredRowsArgs {
  const DSeq* seqs;
  int nseq;
  int64_t r0, pairs;  // pairs: (row, query head) pairs of rows [r0, r1)
  int Hq, G, C;       // C: blocks per pair (the cluster kernel)
  int64_t Smax, Tq, K;
  bool causal, vec_v;
  DRows v;
  SelectOpts sel;
  const float* scores;  // compact [r1 - r0, Hq, Smax]
  const float* rank = nullptr;  // group sharing: compact [r1 - r0, Hkv, Smax], selected over
  // The warp select's candidate mode (topk/tile_filter.cu): per pair, ccap slots of (score
  // bits, key index) and the count; q and k to score forced keys and undecided rows.
  const uint2* cand = nullptr;
  const int* cnt = nullptr;
  int64_t ccap = 0;
  DRows q, k;
  float scale = 1.f;
  int32_t* out;
  DOut dst;
};

inline StoredRowsArgs stored_rows_args(const AttnParams& p, const SeqTable& st, int64_t r0,
                                       int64_t r1, const SelectOpts& sel, const float* scores,
                                       int32_t* indices, int64_t K) {
  StoredRowsArgs a;
  a.seqs = st.d;
  a.nseq = st.n;
  a.r0 = r0;
  a.pairs = (r1 - r0) * p.Hq;
  a.Hq = p.Hq;
  a.G = p.group();
  a.C = 1;
  a.Smax = p.Smax;
  a.Tq = p.Tq;
  a.K = K;
  a.causal = p.causal;
  a.v = drows(p.v);
  a.vec_v = rows_aligned(a.v);
  a.sel = sel;
  a.scores = scores;
  a.out = indices;
  a.dst = dout(p);
  return a;
}

}  // namespace topk::cuda
