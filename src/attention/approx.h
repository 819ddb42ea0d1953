// Params of the approximate-selector ops (include/topk/approx.h) and their backend entry points.
// The dispatch files (indexer.cpp, approx_scores.cpp) validate the public arguments once and
// fill these; ref/, cpu/ and cuda/ read only these.
#pragma once
#include <cmath>
#include <cstdint>

#include "attention/params.h"

namespace topk {

// indexer_scores. a is planned from (qi, ki): a.Hq = HI, a.Hkv = 1, a.D = dI, a.q = qi rows,
// a.k = ki rows, a.seqs / a.causal as given.
struct IndexerParams {
  AttnParams a;
  const float* w = nullptr;  // [B, Tq, HI] f32 contiguous
  float* scores = nullptr;   // [B, Tq, 1, Smax] f32 contiguous
  // FP8 keys (a.k.dtype f8e4m3): key j of batch b has scale kscale[b * kscale_sb + j].
  const float* kscale = nullptr;
  int64_t kscale_sb = 0;
};

// indexer_quantize_keys: rows (b, s) of x [B, S, 1, dI] into q8 and scale (strides in elements).
struct QuantizeKeysParams {
  Rows x;
  uint8_t* q8 = nullptr;
  int64_t q8_sb = 0, q8_st = 0;
  float* scale = nullptr;
  int64_t scale_sb = 0, scale_st = 0;
  int64_t B = 0, S = 0;
  int dI = 0;
};

// indexer_loss. a is planned from (q, k): the target attention (a.lse is its lse, read only).
struct IndexerLossParams {
  AttnParams a;
  Rows qi, ki;                   // qi [B, Tq, HI, dI]; ki [B, Smax, 1, dI]
  int HI = 0, dI = 0;
  int64_t B = 0;
  const float* w = nullptr;      // [B, Tq, HI] f32
  const int32_t* idx = nullptr;  // [B, Tq, 1, K] or null: every visible key
  int64_t K = 0;
  float* loss = nullptr;         // [B, Tq]
  float* dqi = nullptr;          // [B, Tq, HI, dI] contiguous, or null (no gradient)
  float* dw = nullptr;           // [B, Tq, HI]
  float* dki = nullptr;          // [B, Smax, dI]
};

// quest_scores: a planned from (q, k); scores [B, Tq, Hq, P].
struct QuestParams {
  AttnParams a;
  int page = 0;
  int64_t P = 0;
  float* scores = nullptr;
};

// quantized_scores: a planned from (q, k); scores [B, Tq, Hq, Smax] like attention_scores.
struct QuantParams {
  AttnParams a;
  int bits = 8;
  float* scores = nullptr;
};

// mask_scores: rows [R, H, S] of scores, lists [R, Hsel, C].
struct MaskParams {
  int64_t R = 0, S = 0, C = 0;
  int H = 0, Hsel = 0;
  float* scores = nullptr;
  const int32_t* idx = nullptr;
};

// The quantisation of one key element (quantized_scores): the same fp32 operations on every
// backend, so that the rounded keys agree bit for bit. L = 127 or 7.
inline float quant_step(float amax, int bits) { return amax / (bits == 8 ? 127.0f : 7.0f); }
inline float quant_value(float x, float step) {
  return step > 0 ? step * std::round(x / step) : 0.0f;
}

// Entry points, one per op and backend. They trust their Params.
namespace ref {
void indexer_scores(const IndexerParams& p);
void indexer_loss(const IndexerLossParams& p);
void quest_scores(const QuestParams& p);
void quantized_scores(const QuantParams& p);
void mask_scores(const MaskParams& p);
}  // namespace ref

namespace cpu {
void indexer_scores(const IndexerParams& p);
void quantize_keys(const QuantizeKeysParams& p);
void indexer_loss(const IndexerLossParams& p);
void quest_scores(const QuestParams& p);
void quantized_scores(const QuantParams& p);
void mask_scores(const MaskParams& p);
}  // namespace cpu

namespace cuda {
// Device pointers in the Params; seqs on the host.
void indexer_scores(const IndexerParams& p);
void quantize_keys(const QuantizeKeysParams& p);
void indexer_loss(const IndexerLossParams& p);
void quest_scores(const QuestParams& p);
void quantized_scores(const QuantParams& p);
void mask_scores(const MaskParams& p);
// dst[r, h, :] = src[r, 0, :] for every row r and h < H: src [R, 1, K], dst [R, H, K] i32.
void broadcast_rows(const int32_t* src, int32_t* dst, int64_t R, int H, int64_t K);
}  // namespace cuda

}  // namespace topk
