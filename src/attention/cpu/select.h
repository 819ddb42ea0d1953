// Exact top-W selection of one row, shared by topk_select and the fused top-k attention.
// Radix select instead of a sort: scores map to order-preserving unsigned keys, a histogram
// (of buckets linear between the row's min and max for f32 rows of 128 keys or more, else of
// the keys' high bits) finds the bucket that holds the W-th best key, and the next digits
// resolve it among the keys of that bucket, the last few by a sort. Ties at the threshold go
// to the lower index, as the reference's stable order does; NaN maps to key 0, the lowest rank.
#pragma once
#include <cstdint>
#include <vector>

#include "attention/cpu/common.h"

namespace topk::cpu::TOPK_ISA {

struct SelectScratch {
  std::vector<uint32_t> k32, b32;
  std::vector<uint64_t> k64, b64;
  std::vector<int32_t> idx;
  std::vector<uint16_t> bins;
  std::vector<double> rank;
};

// Selects among the n visible keys of a row whose rank values are f32 scores: forced sink and
// window keys plus the best of the rest up to the budget; writes out[0..K) in ascending key
// order, padded with -1.
void select_row(const float* score, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                SelectScratch& w);
// Same with double rank values (group-shared selection).
void select_row(const double* rank, int64_t n, const SelectOpts& sel, int32_t* out, int64_t K,
                SelectScratch& w);

// Rank of each key for a group-shared selection: the sum over the G heads of the group of the
// head's softmax probability over its n visible keys, computed in double in exactly the
// reference's order of operations, so that it ranks (and ties) identically.
// rows: G score rows, row g at scores + g * ld.
void group_rank(const float* scores, int64_t ld, int G, int64_t n, double* rank);

}  // namespace topk::cpu::TOPK_ISA
