#!/usr/bin/env bash
# One command for a GPU machine: CUDA tests, the GPU benchmarks and the PyTorch side-by-side,
# then compute-sanitizer memcheck and racecheck (the slow steps, last). Logs and JSON go to an
# output folder ($OUT if set, else ./out); a short summary table is printed last.
#
#   tools/gpu-check.sh [BUILD_DIR]     (default: build; built here when its binaries are missing)
#
# Environment: TOPK_BIN (folder holding prebuilt `topk` and `topk_cuda_tests`, instead of a
# build dir), SANITIZER_FILTER (gtest filter for the sanitizer runs), SKIP_TORCH=1, REPS
# (timed runs per case, default 50), STEP_TIMEOUT (seconds per step, default 900).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-./out}
mkdir -p "$OUT"
BUILD=${1:-build}
if [ -n "${TOPK_BIN:-}" ]; then
  TOPK=$TOPK_BIN/topk
  TESTS=$TOPK_BIN/topk_cuda_tests
else
  TOPK=$BUILD/topk
  TESTS=$BUILD/tests/topk_cuda_tests
  if [ ! -x "$TOPK" ] || [ ! -x "$TESTS" ]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
      cmake --build "$BUILD" -j >>"$OUT/build.log" 2>&1 || { echo "build failed: $OUT/build.log"; exit 1; }
  fi
fi
REPS=${REPS:-50}
FILTER=${SANITIZER_FILTER:-CudaAttention.ForwardRaggedDtypes:CudaAttention.ForwardPackedAndStrided:CudaSelect.*:CudaSparse.*:CudaTopk.RatiosForcedAndFull:CudaTopk.CausalPrefill:CudaTopk.ThresholdSmall:CudaTopk.SampleThresholds:CudaTopk.TiesAcrossSlices:CudaFlash.ForwardLayouts:CudaFlash.ForwardStridedCache:CudaBackward.Layouts:CudaBackward.OtherDtypesAndHeadDims:CudaSparseBackward.*:CudaMetrics.*:CudaTopkPrefill.GroupsAndRangesUnderSmallBudget}
LOG=$OUT/gpu-check.log
: >"$LOG"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true

step() { echo "== $1" | tee -a "$LOG"; }
st_tests=FAIL st_mem=FAIL st_race=FAIL st_bench=FAIL st_torch=SKIP

step "tests"
if timeout "${STEP_TIMEOUT:-900}" "$TESTS" >"$OUT/cuda_tests.log" 2>&1; then st_tests=PASS; fi
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/cuda_tests.log" | tee -a "$LOG"

step "topk bench cuda"
if timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench cuda --reps "$REPS" --out "$OUT/bench_cuda.json" 2>&1 | tee -a "$LOG"; then
  [ -s "$OUT/bench_cuda.json" ] && st_bench=PASS
fi
if [ "${SKIP_TORCH:-0}" != 1 ] && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  step "torch baselines"
  if PYTHONUNBUFFERED=1 timeout "${STEP_TIMEOUT:-900}" python3 "$ROOT/bench/torch_baselines.py" --reps "$REPS" --out "$OUT/bench_torch.json" >/dev/null 2>>"$LOG"; then
    st_torch=PASS
  else
    st_torch=FAIL
  fi
fi

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
step "compute-sanitizer memcheck ($FILTER)"
if timeout "${STEP_TIMEOUT:-900}" "$SAN" --tool memcheck --error-exitcode 3 "$TESTS" --gtest_filter="$FILTER" >"$OUT/sanitizer.log" 2>&1; then st_mem=PASS; fi
tail -n 3 "$OUT/sanitizer.log" | tee -a "$LOG"
step "compute-sanitizer racecheck ($FILTER)"
echo "==== racecheck" >>"$OUT/sanitizer.log"
if timeout "${STEP_TIMEOUT:-900}" "$SAN" --tool racecheck --error-exitcode 3 "$TESTS" --gtest_filter="$FILTER" >>"$OUT/sanitizer.log" 2>&1; then st_race=PASS; fi
tail -n 3 "$OUT/sanitizer.log" | tee -a "$LOG"

echo
echo "| step | result |"
echo "|---|---|"
echo "| CUDA tests | $st_tests ($(grep -c '^\[       OK \]' "$OUT/cuda_tests.log") ok, $(grep -c '^\[  FAILED  \] [A-Z]' "$OUT/cuda_tests.log") failed) |"
echo "| memcheck | $st_mem |"
echo "| racecheck | $st_race |"
echo "| bench cuda | $st_bench |"
echo "| torch baselines | $st_torch |"
if [ "$st_bench" = PASS ] && [ "$st_torch" = PASS ]; then
  echo
  python3 "$ROOT/bench/join_bench.py" "$OUT/bench_cuda.json" "$OUT/bench_torch.json" | tee "$OUT/summary.md"
fi
[ "$st_tests$st_mem$st_race" = PASSPASSPASS ]
