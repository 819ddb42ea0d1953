// Params shared by every backend of the attention ops. The dispatch files validate the public
// arguments once and fill these; ref/, cpu/ and cuda/ read only these.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "attention/select_rule.h"
#include "core/dtype.h"
#include "topk/attention.h"

namespace topk {

// One independent sequence: its queries are rows q_start .. q_start+T-1 of batch `batch` of q,
// its keys rows k_start .. k_start+S-1 of batch `batch` of k and v; query t sits at key
// position q_pos + t. T is the sequence's own query count (seqlens_q[b] in a ragged batch):
// every backend counts query rows with it, never with AttnParams::Tq.
struct SeqDesc {
  int32_t batch, q_start, T, k_start, S, q_pos;
};

// A [B, rows, H, D] tensor with unit stride over D; strides in elements.
struct Rows {
  const void* data = nullptr;
  DType dtype = DType::f32;
  int64_t sb = 0, st = 0, sh = 0;
  int64_t offset(int64_t b, int64_t row, int64_t h) const { return b * sb + row * st + h * sh; }
};

struct AttnParams {
  int nseq = 0;
  const SeqDesc* seqs = nullptr;  // [nseq], host
  int Hq = 0, Hkv = 0, D = 0;
  int64_t Tq = 0;    // rows per batch of q (its shape[1]): the pitch of contiguous per-query
                     // outputs, not a row count (a sequence has SeqDesc::T rows)
  int64_t Smax = 0;  // rows per batch of k (its shape[1])
  float scale = 0;
  bool causal = false;

  Rows q, k, v;   // q [B, Tq, Hq, D]; k, v [B, Smax, Hkv, D]
  Rows o;         // [B, Tq, Hq, D] (data written through a const_cast-free pointer below)
  void* o_data = nullptr;
  float* lse = nullptr;  // [B, Tq, Hq]

  // Sparse attention and selection: indices [B, Tq, Hsel, K].
  const int32_t* idx = nullptr;
  int Hsel = 0;
  int64_t K = 0;

  // Backward.
  Rows dout;                                        // [B, Tq, Hq, D]
  float* dq = nullptr;                              // [B, Tq, Hq, D] contiguous; rows of
                                                    // no sequence are left as they are
  float* dk = nullptr, *dv = nullptr;               // [B, Smax, Hkv, D] contiguous

  int group() const { return Hq / Hkv; }
  // Global row of query t of sequence s in contiguous per-query arrays ([B, Tq, ...]).
  int64_t qrow(const SeqDesc& s, int64_t t) const { return int64_t(s.batch) * Tq + s.q_start + t; }
  int64_t krow(const SeqDesc& s, int64_t j) const { return int64_t(s.batch) * Smax + s.k_start + j; }
  // Keys 0 .. visible-1 of the sequence are visible to query t: always a prefix.
  int64_t visible(const SeqDesc& s, int64_t t) const {
    if (!causal) return s.S;
    int64_t n = int64_t(s.q_pos) + t + 1;
    return n < 0 ? 0 : (n > s.S ? s.S : n);
  }
};

struct SelectParams {
  AttnParams a;                 // seqs, sizes, causal
  const float* scores = nullptr;  // [B, Tq, Hq, Smax]
  int32_t* out = nullptr;         // [B, Tq, Hsel, K]
  int Hsel = 0;
  int64_t K = 0;
  SelectOpts sel;
};

// The selection budget W for a row that sees n keys (select_rule.h, shared with the kernels).
inline int64_t select_budget(const SelectOpts& sel, int64_t n) {
  return budget_of(sel.k, sel.ratio, sel.min_k, n);
}

// Forced keys of a row that sees n keys: sink prefix and window suffix (the two ranges may
// overlap).
inline int64_t forced_count(const SelectOpts& sel, int64_t n) {
  return row_sel(sel.k, sel.ratio, sel.min_k, sel.sink, sel.window, n).forced;
}
inline bool is_forced(const SelectOpts& sel, int64_t n, int64_t j) {
  return j < sel.sink || j >= n - sel.window;
}

// Score order: higher score first, then lower index. NaN ranks lowest.
template <class F>
inline bool ranks_before(F a, int64_t ia, F b, int64_t ib) {
  bool na = a != a, nb = b != b;
  if (na || nb) return !na && nb ? true : (na && nb ? ia < ib : false);
  return a > b || (a == b && ia < ib);
}

// Backend entry points, one per op and backend. They trust their Params.
namespace ref {
void attention_forward(const AttnParams& p);
void attention_backward(const AttnParams& p);
void attention_scores(const AttnParams& p, float* scores);
void topk_select(const SelectParams& p);
void sparse_forward(const AttnParams& p);
void sparse_backward(const AttnParams& p);
void entropy(const AttnParams& p, float* entropy, float* normalized);
void selection_mass(const AttnParams& p, float* mass);
}  // namespace ref

namespace cpu {
void attention_forward(const AttnParams& p);
void attention_backward(const AttnParams& p);
void attention_scores(const AttnParams& p, float* scores);
void topk_select(const SelectParams& p);
void sparse_forward(const AttnParams& p);
void sparse_backward(const AttnParams& p);
// Fused exact top-k attention: scores a block of queries at a time, never a full T x S matrix.
void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices, int64_t K);
void entropy(const AttnParams& p, float* entropy, float* normalized);
void selection_mass(const AttnParams& p, float* mass);
}  // namespace cpu

namespace cuda {
// Device pointers in the Params; seqs on the host (the launcher uploads them).
void attention_forward(const AttnParams& p);
void attention_backward(const AttnParams& p);
void attention_scores(const AttnParams& p, float* scores);
void topk_select(const SelectParams& p);
void sparse_forward(const AttnParams& p);
void sparse_backward(const AttnParams& p);
void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices, int64_t K);
void entropy(const AttnParams& p, float* entropy, float* normalized);
void selection_mass(const AttnParams& p, float* mass);
// The budget of the CUDA buffers an op sizes by its row count (score rows, per-entry arrays of
// the sparse backward): longer calls go in row ranges that keep those buffers under it.
// workspace_budget() is kWorkspaceBudget, or TOPK_CUDA_WORKSPACE_BUDGET (bytes) when set: the
// tests make it small to run the row ranges on small inputs. The score rows of top-k prefill's
// gemm path take score_rows_budget(): a 64th of the device's memory from kWorkspaceBudget to
// kScoreRowsBudgetMax (2 GiB on a 141 GB H200, 1.25 GB on an 80 GB GPU), or the variable when
// set. The sparse backward's per-entry arrays reuse that workspace at the size a forward left.
constexpr size_t kWorkspaceBudget = size_t(256) << 20;
constexpr size_t kScoreRowsBudgetMax = size_t(2) << 30;
size_t workspace_budget();
size_t score_rows_budget();
// The cached workspaces of the CUDA ops: their total size in bytes, and freeing them all (the
// tests check the memory bounds with them).
size_t workspace_bytes();
void workspace_release();
// The per-(row, query head) thresholds [rows, Hq] that top-k attention's threshold path picks
// from its sample (topk/threshold.h), into device memory thr; the tests check them on the host.
void sample_thresholds(const AttnParams& p, const SelectOpts& sel, int64_t K, uint32_t* thr);
}  // namespace cuda

}  // namespace topk
