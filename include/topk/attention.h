// topk attention ops: full attention, exact scores, top-k select, sparse attention over given
// indices, and top-k attention (score -> select -> attend), forward and backward.
// The meaning of every rule below is written out in docs/semantics.md.
//
// Dimension letters: B batch, T queries, S keys, Hq query heads, Hkv key/value heads,
// G = Hq / Hkv, D head dim, K selected keys per row.
//
// Layouts. q, o, dout: [B, T, Hq, D]; k, v: [B, S, Hkv, D]. The last dim must have stride 1;
// the other strides are free (a slice of a larger KV cache is fine). Small outputs are
// contiguous: lse, entropy [B, T, Hq] f32; scores [B, T, Hq, S] f32; indices [B, T, Hsel, K] i32
// with Hsel = Hq (per-head selection) or Hkv (one selection per KV group). Gradients dq, dk, dv
// are contiguous f32 and overwritten (dq in the rows of the sequences' queries; dk and dv whole,
// 0 where no query attends). Inputs may be f32 or bf16 (f16 too on CUDA); o may be
// f32 or bf16. All tensors of one call live on one device.
#pragma once
#include <span>

#include "topk/core.h"

namespace topk {

enum class Backend : uint8_t { automatic, ref, cpu, cuda };
const char* backend_name(Backend b);

// How rows of q and k/v form independent sequences.
//  Batched (default): sequence b has the T queries q[b] and the S keys k[b], or only the first
//    seqlens_k[b] keys when given (a ragged KV cache padded to S), and only the first
//    seqlens_q[b] queries when given (prompts of different lengths padded to T). Query rows
//    past seqlens_q[b] are never read, and their o, lse (and dq) entries are not written.
//  Packed: q is [1, Nq, Hq, D] and k, v are [1, Nk, Hkv, D]; sequence b owns query rows
//    cu_seqlens_q[b] .. cu_seqlens_q[b+1]-1 and key rows cu_seqlens_k[b] .. cu_seqlens_k[b+1]-1.
//    Sequences never see each other. Key index j of sequence b means its j-th key row.
//  Position: query t of sequence b sits at key position q_pos[b] + t. By default
//    q_pos[b] = S_b - T_b: the new queries are the last T_b keys (prefill, KV-cache decode),
//    with T_b = seqlens_q[b] when given.
// Arrays live on the host. seqlens_q comes last so that brace lists written before it existed
// keep their meaning.
struct Seqs {
  std::span<const int32_t> seqlens_k;     // [B]
  std::span<const int32_t> cu_seqlens_q;  // [B+1], packed only
  std::span<const int32_t> cu_seqlens_k;  // [B+1], packed only
  std::span<const int32_t> q_pos;         // [B]
  std::span<const int32_t> seqlens_q;     // [B], batched only: 0 <= seqlens_q[b] <= T
};

struct AttnOpts {
  float scale = 0;      // scores are scale * q.k; 0 means 1/sqrt(D)
  bool causal = false;  // the query at position p sees keys 0..p; otherwise all S_b keys
  Backend backend = Backend::automatic;  // automatic: cuda for device tensors, else cpu
};

// Budget and sharing of a top-k selection. Exactly one of k and ratio is set.
// For a query that sees n keys: W = k, or ceil(ratio * n); then W = max(W, min_k), clamped to
// [1, n] (W = 0 when n = 0). Sink keys 0..sink-1 and window keys n-window..n-1 are always
// selected and count toward W (if they alone exceed W, exactly they are selected).
// The rest of the W slots go to the highest scores; ties go to the lower key index.
struct SelectOpts {
  int k = 0;
  double ratio = 0;
  int min_k = 0;
  bool share_group = false;  // one selection per KV group, ranked by the sum of the
                             // group's softmax probabilities
  int sink = 0;
  int window = 0;
};

// Columns of the indices tensor that a selection over at most S keys needs. Pass the key count
// of the longest sequence (S for batched layouts; the longest cu_seqlens_k span when packed).
int64_t select_capacity(const SelectOpts& sel, int64_t S);

// Full attention. lse[b,t,h] = ln sum_j exp(s_j) over the visible keys; a query that sees no
// key gets o = 0 and lse = +inf.
void attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                       const Seqs& seqs, const AttnOpts& opts, const TensorView& o,
                       const TensorView& lse);
void attention_backward(const TensorView& q, const TensorView& k, const TensorView& v,
                        const TensorView& o, const TensorView& lse, const TensorView& dout,
                        const Seqs& seqs, const AttnOpts& opts, const TensorView& dq,
                        const TensorView& dk, const TensorView& dv);

// Exact scores scale * q.k for every query of q (pass a slice of queries, with q_pos, for a
// block). scores: [B, T, Hq, S] f32; keys a query does not see are -inf.
void attention_scores(const TensorView& q, const TensorView& k, const Seqs& seqs,
                      const AttnOpts& opts, const TensorView& scores);

// Top-k selection over score rows [B, T, Hq, S] (as attention_scores writes them; the visible
// keys of each query follow seqs and opts.causal). indices: [B, T, Hsel, K] with
// K >= select_capacity(sel, longest sequence's keys); selected key indices come first, then -1.
// The CPU backends write each row in ascending key order; CUDA leaves the order unspecified.
void topk_select(const TensorView& scores, const Seqs& seqs, const AttnOpts& opts,
                 const SelectOpts& sel, const TensorView& indices);

// Attention over given key indices [B, T, Hsel, K] (relative to the sequence's keys). An index
// < 0 or >= S_b is skipped; the list is the mask (opts.causal is not applied). A row with no
// valid index gives o = 0 and lse = +inf. Each listed index counts once per appearance.
void sparse_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                              const TensorView& indices, const Seqs& seqs, const AttnOpts& opts,
                              const TensorView& o, const TensorView& lse);
void sparse_attention_backward(const TensorView& q, const TensorView& k, const TensorView& v,
                               const TensorView& indices, const TensorView& o,
                               const TensorView& lse, const TensorView& dout, const Seqs& seqs,
                               const AttnOpts& opts, const TensorView& dq, const TensorView& dk,
                               const TensorView& dv);

// Exact top-k attention: scores -> topk_select -> sparse attention, for decode (T = 1 or a few)
// and causal prefill/training. Writes the indices it used; the backward is
// sparse_attention_backward over them (the hard selection passes no gradient).
void topk_attention_forward(const TensorView& q, const TensorView& k, const TensorView& v,
                            const Seqs& seqs, const AttnOpts& opts, const SelectOpts& sel,
                            const TensorView& o, const TensorView& lse,
                            const TensorView& indices);

// Metrics over full attention.
// entropy[b,t,h] = -sum_j a_j ln a_j of the query's softmax over its visible keys (0 when it
// sees at most one key); normalized (optional) = entropy / ln n.
void attention_entropy(const TensorView& q, const TensorView& k, const Seqs& seqs,
                       const AttnOpts& opts, const TensorView& entropy,
                       const TensorView& normalized);
// mass[b,t,h] = sum of the full softmax probabilities of the keys in the query head's selection
// (indices [B, T, Hsel, K]; invalid entries skipped, duplicates counted once).
void selection_mass(const TensorView& q, const TensorView& k, const TensorView& indices,
                    const Seqs& seqs, const AttnOpts& opts, const TensorView& mass);
// precision[b,t,h] = |approx ∩ exact| / W, W = number of valid entries in the exact row
// (entries < 0 ignored, duplicates counted once; NaN when W = 0). Both [B, T, Hsel, *] i32.
void retrieval_precision(const TensorView& approx, const TensorView& exact,
                         const TensorView& precision);

}  // namespace topk
