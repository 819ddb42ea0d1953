// Exact top-k attention on CUDA. Three pipelines, all exact:
//   threshold path (per-head selection, topk/threshold.h): sampled thresholds -> one score pass
//     over K that keeps only candidates -> select among them and attend, in one kernel. K is
//     read once, no score row is written, and only the chosen V rows are gathered.
//   general path: scores (each K row read once for its whole group), then per-head
//     selection and attention in one kernel over the stored rows (topk/stored_select_attend.cu,
//     rows of up to 64K keys); group sharing and longer rows: group ranking when shared ->
//     exact radix selection (a cluster per row when rows are few) -> split-KV sparse
//     attention over the chosen keys that reuses the stored scores.
//   gemm path (prefill and training): the general path's selection and attention over score
//     rows that cuBLAS computes as matrix products on tensor cores (topk/gemm_scores.cu), in chunks
//     of rows whose score rows span only the chunk's longest visible row.
//   filtered path (prefill and training, per-head selection of 16-bit q and k): no score rows;
//     query tiles score a 16th of their keys for thresholds, then every key on tensor cores,
//     keeping the keys at or above the threshold as candidates, and the warp select chooses
//     among those and attends (topk/tile_filter.cu).
// Both other pipelines score each query row on its own: in a prefill of T rows that reads
// about T x S x D per head, on CUDA cores or one row's tiles at a time. So calls with many
// query rows per sequence (kGemmRows on average) take the filtered path where it applies
// (per-head selection, 16-bit q and k of one dtype, budgets the warp select holds), else the
// gemm path (H100, B·S = 128K, rho = 1%, filtered vs gemm forward+backward: 187 vs 220 ms at
// S = 8K, 703 vs 746 ms at 32K; docs/benchmarks.md). Otherwise per-head selection takes the
// threshold path when there are more (row, head) pairs than SMs, or when rows are long. With
// few pairs and short rows its select-and-attend leaves most SMs idle and the general path is
// faster; over long rows the general path's full score rows cost more (H100, one row, Hq = 32,
// general vs threshold path: S = 32K 66 vs 85 us, and S = 128K 176 vs 149 us with the older
// general sequence; docs/benchmarks.md). TOPK_CUDA_TOPK_PATH=threshold, =general, =gemm or
// =filtered forces one (the tests run all four; gemm with other dtypes scores its chunks with
// the score kernel, and filtered falls back to gemm where it does not apply).
// Memory: rows go in ranges whose row-sized buffers (score rows, candidates, selected scores)
// stay under workspace_budget() (256 MiB; the gemm path's score rows score_rows_budget(), up to
// 2 GiB by the device's memory). When a prefill does not fit whole and its sequences
// are much shorter than Smax (packed training: Smax is the packed total, and a row needs only
// its own sequence's keys), consecutive sequences go in groups whose score rows span only the
// group's longest sequence, as many per group as fit. So causal prefill and training of any
// length never hold a T x S (or packed N x N) score matrix.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "attention/cuda/common.cuh"
#include "attention/cuda/launch.h"
#include "attention/cuda/flash.cuh"
#include "attention/cuda/topk/threshold.h"

namespace topk::cuda {

namespace {

void threshold_path(const AttnParams& p, const SeqTable& st, const SelectOpts& sel,
                    int32_t* indices, int64_t K) {
  const int64_t cap = threshold_cap(K, p.Smax);
  const int64_t per_row = int64_t(p.Hq) * (p.Smax * 4 + cap * 8 + K * 4 + 8);
  const int64_t step = std::max<int64_t>(1, int64_t(workspace_budget()) / per_row);
  for (int64_t r0 = 0; r0 < st.rows; r0 += step) {
    const int64_t r1 = std::min(st.rows, r0 + step), hr = (r1 - r0) * p.Hq;
    const int64_t items = threshold_items(p, r1 - r0);
    uint32_t* thr = static_cast<uint32_t*>(workspace(kWsThr, size_t(hr) * 8 + size_t(items) * 4));
    int* cnt = reinterpret_cast<int*>(thr + hr);
    int* done = cnt + hr;
    uint32_t* cand = static_cast<uint32_t*>(workspace(kWsCand, size_t(hr * cap) * 8));
    float* sel_scores = static_cast<float*>(workspace(kWsSelScores, size_t(hr * K) * 4));
    float* scratch = static_cast<float*>(workspace(kWsScores, size_t(hr * p.Smax) * 4));
    launch_sample_thresholds(p, st, r0, r1, sel, cap, thr, cnt, done);
    launch_scores_filter(p, st, r0, r1, sel, thr, cnt, cand, cap, sel_scores, K, done);
    launch_select_attend(p, st, r0, r1, sel, cnt, cand, cap, sel_scores, scratch, indices, K, done);
  }
}

bool filtered_fits(const AttnParams& p, bool shared, int64_t K) {
  return !shared && select_attend_warps_fits(K) && tile_filter_fits(p);
}

// The filtered path (prefill and training; topk/tile_filter.cu): query tiles of 128 rows, in
// chunks of consecutive tiles whose per-row buffers (candidate lists, sampled scores) fit the
// score-row budget, each chunk's tiles longest first. Per chunk: the sample pass and its
// thresholds, the filtering score pass, then the warp select over the candidates. Nothing of
// size rows x keys is written: a row's buffers hold cap candidates and a 16th of Smax scores.
void filtered_path(const AttnParams& p, const SeqTable& st, const SelectOpts& sel,
                   int32_t* indices, int64_t K) {
  constexpr int kTileRows = 128;  // tile_filter.cu's query tile
  const int64_t cap = warp_select_cap(K);
  const int64_t pitch = (tile_sample_count(p.Smax) + 3) / 4 * 4;
  const int64_t per_row = int64_t(p.Hq) * (cap * 8 + pitch * 4 + 8);
  const int64_t budget = int64_t(score_rows_budget());
  struct Chunk {
    size_t t0, t1;
    int64_t r0, rows;
  };
  std::vector<FlashTile> tiles;
  std::vector<int64_t> work;
  std::vector<Chunk> chunks;
  int64_t base = 0;  // compact row of sequence i's first query
  for (int i = 0; i < p.nseq; base += p.seqs[i].T, i++) {
    const SeqDesc& s = p.seqs[i];
    for (int64_t t0 = 0; t0 < s.T; t0 += kTileRows) {
      const int64_t rows = std::min<int64_t>(kTileRows, s.T - t0);
      if (chunks.empty() || (chunks.back().rows + rows) * per_row > budget)
        chunks.push_back({tiles.size(), tiles.size(), base + t0, 0});
      tiles.push_back({int32_t(i), int32_t(t0)});
      work.push_back(p.visible(s, t0 + rows - 1));
      chunks.back().t1 = tiles.size();
      chunks.back().rows += rows;
    }
  }
  for (const Chunk& c : chunks) {
    std::vector<size_t> order(c.t1 - c.t0);
    for (size_t i = 0; i < order.size(); i++) order[i] = c.t0 + i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return work[a] > work[b]; });
    std::vector<FlashTile> sorted(order.size());
    for (size_t i = 0; i < order.size(); i++) sorted[i] = tiles[order[i]];
    std::copy(sorted.begin(), sorted.end(), tiles.begin() + std::ptrdiff_t(c.t0));
  }
  const FlashTile* dtiles = static_cast<const FlashTile*>(
      upload_table(kTabTopkTiles, tiles.data(), tiles.size() * sizeof(FlashTile)));
  for (const Chunk& c : chunks) {
    const int64_t pairs = c.rows * p.Hq;
    uint32_t* cand = static_cast<uint32_t*>(workspace(kWsScores, size_t(pairs) * size_t(cap * 8 + pitch * 4)));
    float* samp = reinterpret_cast<float*>(cand + pairs * cap * 2);
    uint32_t* tau = static_cast<uint32_t*>(workspace(kWsThr, size_t(pairs) * 8));
    int* cnt = reinterpret_cast<int*>(tau + pairs);
    const int64_t nt = int64_t(c.t1 - c.t0);
    launch_tile_sample(p, st, dtiles + c.t0, nt, c.r0, c.rows, sel, cap, samp, pitch, tau);
    launch_tile_filter(p, st, dtiles + c.t0, nt, c.r0, sel, tau, cand, cnt, cap);
    launch_select_attend_cands(p, st, c.r0, c.r0 + c.rows, sel, cand, cnt, cap, indices, K);
  }
}

// Rows at least this long take the threshold path whatever their number (measured at 32K and
// 128K keys; the crossing lies between).
constexpr int64_t kThresholdLongRow = 65536;

// Query rows per sequence (on average over the sequences that have any) from which the score
// rows are matrix products: a product over fewer rows reads K for little work.
constexpr int64_t kGemmRows = 64;

enum class Path { threshold, general, gemm, filtered };

Path pick_path(const AttnParams& p, const SeqTable& st, bool shared, int64_t K) {
  const char* e = std::getenv("TOPK_CUDA_TOPK_PATH");
  if (e && *e) {
    // Group sharing has no threshold path.
    if (!std::strcmp(e, "threshold")) return shared ? Path::general : Path::threshold;
    if (!std::strcmp(e, "general")) return Path::general;
    if (!std::strcmp(e, "gemm")) return Path::gemm;
    // The filtered path takes per-head selection of 16-bit q and k and warp-sized budgets; the
    // gemm path runs the rest.
    if (!std::strcmp(e, "filtered")) return filtered_fits(p, shared, K) ? Path::filtered : Path::gemm;
    throw Error(detail::format_error("TOPK_CUDA_TOPK_PATH=%s: expected threshold, general, gemm or filtered", e));
  }
  int64_t seqs = 0;
  for (int i = 0; i < p.nseq; i++) seqs += p.seqs[i].T > 0;
  if (st.rows >= kGemmRows * seqs && filtered_fits(p, shared, K)) return Path::filtered;
  if (st.rows >= kGemmRows * seqs && score_gemm_fits(p)) return Path::gemm;
  if (!shared && (st.rows * p.Hq > num_sms() || p.Smax >= kThresholdLongRow)) return Path::threshold;
  return Path::general;
}

// Bytes per query row of the buffers either pipeline sizes by its rows (the larger of the two).
int64_t row_bytes(const AttnParams& p, const SelectOpts& sel, int64_t K) {
  const int64_t thr = int64_t(p.Hq) * (p.Smax * 4 + threshold_cap(K, p.Smax) * 8 + K * 4 + 8);
  const int64_t gen = int64_t(p.Hq) * p.Smax * 4 + (sel.share_group ? int64_t(p.Hkv) * p.Smax * 4 : 0);
  return std::max(thr, gen);
}

// Per-head selection over stored rows: a warp per (row, head) when the pairs fill the GPU
// several times over and budgets are small (prefill and training), else a cluster of blocks
// per pair (decode at small batch, where latency rules; rows past its length take a block per
// pair). Group sharing follows the same rule: a warp per (row, KV head), else the radix select
// over the rank rows and the split attend. TOPK_CUDA_STORED_SELECT=warps or =clusters forces
// one (warps only where the budget fits it).
bool stored_select_by_warps(const AttnParams& p, int64_t rows, int64_t K) {
  if (!select_attend_warps_fits(K)) return false;
  if (const char* e = std::getenv("TOPK_CUDA_STORED_SELECT"); e && *e) {
    if (!std::strcmp(e, "warps")) return true;
    if (!std::strcmp(e, "clusters")) return false;
    throw Error(detail::format_error("TOPK_CUDA_STORED_SELECT=%s: expected warps or clusters", e));
  }
  return rows * p.Hq >= 4 * int64_t(num_sms()) || !select_attend_rows_fits(p.Smax);
}

// Selection and attention of rows [r0, r1) from their stored score rows ([r1-r0, Hq, Smax]).
void select_attend_stored(const AttnParams& p, const SeqTable& st, int64_t r0, int64_t r1,
                          const SelectOpts& sel, bool shared, const float* scores,
                          int32_t* indices, int64_t K) {
  if (shared) {
    float* rank = static_cast<float*>(workspace(kWsRank, size_t((r1 - r0) * p.Hkv * p.Smax * 4)));
    launch_group_rank(p, st, r0, r1, scores, rank);
    if (stored_select_by_warps(p, r1 - r0, K)) {
      launch_select_attend_warps_group(p, st, r0, r1, sel, scores, rank, indices, K);
    } else {
      launch_select(p, st, r0, r1, rank, true, p.Hsel, sel, indices, K);
      launch_attend(p, st, r0, r1, indices, p.Hsel, K, scores);
    }
  } else if (stored_select_by_warps(p, r1 - r0, K)) {
    launch_select_attend_warps(p, st, r0, r1, sel, scores, indices, K);
  } else if (select_attend_rows_fits(p.Smax)) {
    launch_select_attend_rows(p, st, r0, r1, sel, scores, indices, K);
  } else {
    launch_select(p, st, r0, r1, scores, true, p.Hsel, sel, indices, K);
    launch_attend(p, st, r0, r1, indices, p.Hsel, K, scores);
  }
}

// The gemm path: chunks of consecutive rows as many as fit the budget when each row's scores
// span the chunk's longest visible row (rounded up to 4 keys for 16-byte aligned rows). The
// chunk's Params carry that length as Smax: every kernel over stored rows takes Smax as the
// rows' pitch and an upper bound of the visible keys, nothing more. Causal rows early in a
// sequence see few keys, so their chunks hold more rows, and their selection fewer blocks.
void gemm_path(const AttnParams& p, const SeqTable& st, const SelectOpts& sel, bool shared,
               int32_t* indices, int64_t K) {
  const bool tc = score_gemm_fits(p);
  const int64_t per_key = int64_t(p.Hq + (shared ? p.Hkv : 0)) * 4;
  const int64_t budget = int64_t(score_rows_budget());
  int i = 0;
  int64_t t = 0;  // the next row: query t of sequence i
  for (int64_t r0 = 0, r1 = 0; r0 < st.rows; r0 = r1) {
    int64_t pitch = 4;
    while (r1 < st.rows) {
      while (t == p.seqs[i].T) {  // rows remain, so some later sequence has them
        i++;
        t = 0;
      }
      const int64_t n = std::max<int64_t>(pitch, (p.visible(p.seqs[i], t) + 3) / 4 * 4);
      if (r1 > r0 && (r1 - r0 + 1) * n * per_key > budget) break;
      pitch = n;
      r1++;
      t++;
    }
    AttnParams cp = p;
    cp.Smax = pitch;
    float* scores = static_cast<float*>(workspace(kWsScores, size_t((r1 - r0) * p.Hq * pitch * 4)));
    if (tc) launch_score_gemm(cp, r0, r1, scores);
    else launch_scores(cp, st, r0, r1, scores, true, false, true);
    select_attend_stored(cp, st, r0, r1, sel, shared, scores, indices, K);
  }
}

void run_topk(const AttnParams& p, const SelectOpts& sel, int32_t* indices, int64_t K) {
  SeqTable st = upload_seqs(p);
  if (st.rows == 0) return;
  const bool shared = sel.share_group && p.group() > 1;
  const Path path = pick_path(p, st, shared, K);
  if (path == Path::threshold) {
    threshold_path(p, st, sel, indices, K);
    return;
  }
  if (path == Path::gemm) {
    gemm_path(p, st, sel, shared, indices, K);
    return;
  }
  if (path == Path::filtered) {
    filtered_path(p, st, sel, indices, K);
    return;
  }
  const int64_t per_row = int64_t(p.Hq) * p.Smax * 4;
  const int64_t rank_row = shared ? int64_t(p.Hkv) * p.Smax * 4 : 0;
  const int64_t step = std::max<int64_t>(1, int64_t(workspace_budget()) / std::max<int64_t>(1, per_row + rank_row));
  for (int64_t r0 = 0; r0 < st.rows; r0 += step) {
    int64_t r1 = std::min(st.rows, r0 + step);
    float* scores = static_cast<float*>(workspace(kWsScores, size_t((r1 - r0) * per_row)));
    launch_scores(p, st, r0, r1, scores, true, false, true);
    select_attend_stored(p, st, r0, r1, sel, shared, scores, indices, K);
  }
}

}  // namespace

void topk_attention_forward(const AttnParams& p, const SelectOpts& sel, int32_t* indices,
                            int64_t K) {
  int64_t rows = 0, own = 0, max_T = 0;  // own: score entries of rows over their own keys
  for (int i = 0; i < p.nseq; i++) {
    rows += p.seqs[i].T;
    own += int64_t(p.seqs[i].T) * p.seqs[i].S;
    max_T = std::max<int64_t>(max_T, p.seqs[i].T);
  }
  // One call (in row ranges past the budget) when it fits, for decode (T <= 1: groups would
  // re-send the sequence table every step), and when rows over Smax keys waste little.
  if (rows * row_bytes(p, sel, K) <= int64_t(workspace_budget()) || max_T <= 1 ||
      2 * own > rows * p.Smax) {
    run_topk(p, sel, indices, K);
    return;
  }
  // Groups of consecutive sequences whose rows of their longest sequence's keys fit the budget
  // (a sequence that alone does not fit goes in row ranges inside run_topk).
  for (int g0 = 0; g0 < p.nseq;) {
    AttnParams gp = p;
    int g1 = g0;
    int64_t smax = 1, grows = 0;
    while (g1 < p.nseq) {
      gp.Smax = std::max<int64_t>(smax, p.seqs[g1].S);
      const int64_t r = grows + p.seqs[g1].T;
      if (g1 > g0 && r * row_bytes(gp, sel, K) > int64_t(workspace_budget())) break;
      smax = gp.Smax;
      grows = r;
      g1++;
    }
    gp.seqs = p.seqs + g0;
    gp.nseq = g1 - g0;
    gp.Smax = smax;
    run_topk(gp, sel, indices, K);
    g0 = g1;
  }
}

}  // namespace topk::cuda
