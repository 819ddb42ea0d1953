// Sizes of the threshold path of CUDA top-k attention (host and device; plain C++ so that the
// tests can build inputs that defeat the sample).
//
// The path: score an evenly spaced sample of each row's competing keys, take a threshold that
// about E keys of the row should reach, keep only keys at or above it as candidates while
// scoring all of K, then select exactly among the candidates. It is exact whenever the row
// keeps at least `take` candidates and at most `cap` (then every key of the true top-k is a
// candidate); any other row is redone from its full score row.
#pragma once
#include <cstdint>

#include "attention/select_rule.h"  // TOPK_HOST_DEVICE

namespace topk::cuda {

constexpr int64_t kThresholdMaxSamples = 2048;

// Query heads per item (row, KV head, head slice) of the sample and the score passes: a group
// of G heads goes in slices of this many. The filtering pass counts its finished tiles per
// item and select-and-attend finds a head's item by the same rule, so all three use this.
inline int score_item_heads(int G) { return G <= 4 ? 4 : 8; }

// Candidates a row aims for: twice its budget, at least 1024, and at least m / 64 so that the
// sample (at most 2048 keys) puts >= 32 of its keys above the threshold.
TOPK_HOST_DEVICE inline int64_t threshold_target(int64_t take, int64_t m) {
  int64_t e = 2 * take;
  if (e < 1024) e = 1024;
  if (e < (m + 63) / 64) e = (m + 63) / 64;
  return e;
}

// Candidate slots per row for budgets up to K over rows of up to Smax keys: twice the
// largest target plus 1024, so overflowing needs twice the expected count.
TOPK_HOST_DEVICE inline int64_t threshold_cap(int64_t K, int64_t Smax) {
  return 2 * threshold_target(K, Smax) + 1024;
}

// Sample size for a row of m competing keys (only when m > cap): enough for >= 32 sampled
// keys above the threshold, between 512 and 2048.
TOPK_HOST_DEVICE inline int64_t threshold_samples(int64_t take, int64_t m) {
  int64_t e = threshold_target(take, m);
  int64_t n = (32 * m + e - 1) / e;
  if (n < 512) n = 512;
  if (n > kThresholdMaxSamples) n = kThresholdMaxSamples;
  return n;
}

// Position (within the competing keys) of sample i of n: the middle of the i-th of n equal
// parts, floor((2i + 1) m / 2n). In double, which is exact here (operands below 2^53, and a
// quotient that is not an integer lies at least 1/2n from one) and on the GPU far cheaper
// than a 64-bit integer division.
TOPK_HOST_DEVICE inline int64_t threshold_sample_pos(int64_t i, int64_t n, int64_t m) {
  return int64_t(double(2 * i + 1) * double(m) / double(2 * n));
}

}  // namespace topk::cuda
