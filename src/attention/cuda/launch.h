// Internal launchers shared by the CUDA ops (plain C++ declarations; kernels live in the .cu
// files). Rows are compact query rows [r0, r1) of the uploaded sequence table.
#pragma once
#include <cstdint>

#include "attention/params.h"

namespace topk::cuda {

struct SeqTable;

// Scores scale * q.k into out: compact rows ([r1-r0, Hq, Smax]) or the caller's per-query
// layout ([B, Tq, Hq, Smax]). fill_tail: also write -inf past each row's visible keys.
// reread: the scores are read again right away (top-k decode), so K streams through L2 with
// an evict-first hint and leaves them there.
void launch_scores(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1, float* out,
                   bool out_compact, bool fill_tail, bool reread);

// Score rows of query rows [r0, r1) as launch_scores writes them (compact [r1-r0, Hq, Smax],
// scale * q.k), as one cuBLAS product per (sequence, KV head) (topk/gemm_scores.cu); each row's
// visible keys are written, nothing past them is meant to be read. score_gemm_fits: q and k
// bf16 or f16 of one dtype, and leading dims that cuBLAS takes.
bool score_gemm_fits(const AttnParams& p);
void launch_score_gemm(const AttnParams& p, int64_t r0, int64_t r1, float* out);

// Attention of rows [r0, r1): full (idx == nullptr) or over idx [B, Tq, Hsel, K]. prescored:
// compact scores [r1-r0, Hq, Smax] of the same rows (skips reading K). Writes o and lse.
void launch_attend(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                   const int32_t* idx, int Hsel, int64_t K, const float* prescored);

// Attention of rows [r0, r1) on tensor cores (bf16 K and V, D 64, 128 or 256, aligned rows),
// full or over lists of one per KV head (Hsel == Hkv); false, with nothing launched, when the
// call does not qualify.
bool launch_attend_mma(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                       const int32_t* idx, int Hsel, int64_t K, int max_splits);

// Full attention of every query row on tensor cores, FlashAttention-2 style (flash_forward.cu),
// for bf16 or f16 q, k, v (one dtype), D 64, 128 or 256, 16-byte aligned rows; false, with nothing
// launched, when the call does not qualify.
bool launch_flash_forward(const AttnParams& p, const SeqTable& st);

// The backward's per-row values (attention_backward.cu): the pair ld[2 (h R + r) + {0, 1}] =
// (lse * log2 e, Delta = dout . o) for compact row r of R and query head h ([Hq, R, 2]); and,
// when dout16 is given, dout rounded to dtype dt16 (kBF16 or kF16) in a contiguous
// [B, Tq, Hq, D] copy, and Delta from the rounded dout (the one the products then use).
void launch_bwd_prep(const AttnParams& p, const SeqTable& st, float* ld, void* dout16, int dt16);

// dq, dk, dv of full attention on tensor cores (flash_backward.cu) from the prepared ld, with
// dout as a 16-bit tensor of q's dtype with 16-byte aligned rows. flash_backward_fits: bf16 or
// f16 q, k, v (one dtype), D 64, 128 or 256, aligned rows. dk and dv rows of no sequence are left
// as they are.
bool flash_backward_fits(const AttnParams& p);
void launch_flash_backward(const AttnParams& p, const SeqTable& st, const float* ld,
                           const Rows& dout16);

// Merges the split partials of rows [r0, r0 + nrows): pml (m, l) pairs [nrows, Hq, nsplit],
// pacc [nrows, Hq, nsplit, D], into o and lse.
void launch_combine(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t nrows, int nsplit,
                    const float* pml, const float* pacc);

// Top-k selection of rows [r0, r1) from rank rows `in` ([rows, Hsel, Smax], compact or
// per-query) into out [B, Tq, Hsel, K]. For per-head selection in holds scores with Hsel = Hq.
void launch_select(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                   const float* in, bool in_compact, int Hsel, const SelectOpts& sel,
                   int32_t* out, int64_t K);

// Group ranking: rank[rr, kvh, j] = sum over the group's heads of softmax probabilities of
// the compact scores [r1-r0, Hq, Smax]. rank is compact [r1-r0, Hkv, Smax].
void launch_group_rank(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                       const float* scores, float* rank);

// Threshold path of top-k attention (topk/threshold.h) over rows [r0, r1), per-head selection.
// thr, cnt: [r1-r0, Hq]; cand: (key, index) pairs [r1-r0, Hq, cap]; sel_scores: the scores of
// each row's selection in its index order [r1-r0, Hq, K]; scratch: [r1-r0, Hq, Smax] floats,
// used only by rows whose candidates do not decide the selection. done: key tiles scored per
// score item (row, KV head, head slice; threshold_items of them), zeroed by the sample and
// counted up by the filtering pass, so that select-and-attend (launched to overlap the pass's
// tail) starts on an item as soon as all its tiles are in.
int64_t threshold_items(const AttnParams& p, int64_t rows);
void launch_sample_thresholds(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                              const SelectOpts& sel, int64_t cap, uint32_t* thr, int* cnt,
                              int* done);
void launch_scores_filter(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                          const SelectOpts& sel, const uint32_t* thr, int* cnt, uint32_t* cand,
                          int64_t cap, float* sel_scores, int64_t K, int* done);
void launch_select_attend(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                          const SelectOpts& sel, const int* cnt, const uint32_t* cand,
                          int64_t cap, float* sel_scores, float* scratch, int32_t* indices,
                          int64_t K, const int* done);

// General path of top-k attention, per-head selection over rows of up to
// select_attend_rows_fits keys: exact selection from the compact scores [r1-r0, Hq, Smax] of
// launch_scores (launched right after it, as its programmatic dependent) and attention over
// the chosen keys, into indices, o and lse.
bool select_attend_rows_fits(int64_t Smax);
void launch_select_attend_rows(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                               const SelectOpts& sel, const float* scores, int32_t* indices,
                               int64_t K);
// The same with a warp per (row, head), for many rows and budgets of select_attend_warps_fits
// keys at most (topk/stored_select_attend_warps.cu).
bool select_attend_warps_fits(int64_t K);
void launch_select_attend_warps(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                                const SelectOpts& sel, const float* scores, int32_t* indices,
                                int64_t K);
// Group sharing, the same with a warp per (row, KV head): selection over the group's rank rows
// (launch_group_rank, compact [r1-r0, Hkv, Smax]), then each head of the group attends over
// the shared list with its own scores.
void launch_select_attend_warps_group(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                                      const SelectOpts& sel, const float* scores, const float* rank,
                                      int32_t* indices, int64_t K);
// The warp select's capacity for budget K (768, 1024 or 1536 keys a warp keeps), and the same
// selection and attention over candidate lists instead of stored rows: per (row, head) of rows
// [r0, r1), cap = warp_select_cap(K) slots of (score bits, key index) in index order and their
// count (topk/tile_filter.cu writes them).
int warp_select_cap(int64_t K);
void launch_select_attend_cands(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                                const SelectOpts& sel, const uint32_t* cand, const int* cnt,
                                int64_t cap, int32_t* indices, int64_t K);

// The filtered path's score passes over query tiles [tile0, tile1) of the uploaded tile table
// (128 query rows of one sequence each; compact rows [r0, r0 + rows) in all): the sample pass
// scores a 16th of each row's competing keys into samp ([rows, Hq, pitch]), then a second
// kernel picks each (row, head)'s threshold into tau; the filter pass scores every competing
// key and keeps those at or above tau as candidates (cand [rows, Hq, cap] of (score bits, key
// index), cnt). 16-bit q and k of one dtype with aligned rows (tile_filter_fits), D 64, 128 or
// 256.
bool tile_filter_fits(const AttnParams& p);
int64_t tile_sample_count(int64_t m);
void launch_tile_sample(const AttnParams& p, const SeqTable& st, const void* tiles, int64_t ntiles,
                        int64_t r0, int64_t rows, const SelectOpts& sel, int64_t cap, float* samp,
                        int64_t pitch, uint32_t* tau);
void launch_tile_filter(const AttnParams& p, const SeqTable& st, const void* tiles, int64_t ntiles,
                        int64_t r0, const SelectOpts& sel, const uint32_t* tau, uint32_t* cand,
                        int* cnt, int64_t cap);

}  // namespace topk::cuda
