#!/usr/bin/env bash
# One command for a GPU machine: CUDA tests, the GPU benchmarks and the PyTorch side-by-side,
# where top-k training attention spends its time (Nsight Compute, per phase), the engine
# benchmarks against Hugging Face transformers, then compute-sanitizer memcheck and
# racecheck (the slow steps, last). Logs and JSON go to an output folder ($OUT if set, else
# ./out); a short summary table is printed last.
#
#   tools/gpu-check.sh [BUILD_DIR]     (default: build; built here when its binaries are missing)
#
# Environment: TOPK_BIN (folder holding prebuilt `topk` and `topk_cuda_tests`, instead of a
# build dir), STEPS (which steps, comma separated, default all: tests, bench, torch, dispatch,
# phases, engine, hf, python, dist, sanitize; sanitize is memcheck + racecheck, each also a step
# alone), TEST_FILTER (gtest filter of the tests step), SANITIZER_FILTER (gtest filter for the
# sanitizer runs), SKIP_TORCH=1, REPS (timed runs per case, default 50), STEP_TIMEOUT (seconds
# per step, default 900), HF_ARGS (extra arguments of bench/hf_engine_baselines.py),
# PHASES_CASE (the training case the phases step profiles, default fwdbwd_topk_r0.01_S8192).
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
PHASES_CASE=${PHASES_CASE:-fwdbwd_topk_r0.01_S8192}
STEPS=${STEPS:-tests,bench,torch,dispatch,phases,engine,hf,python,dist,sanitize}
want() { case ",$STEPS," in *",$1,"*) return 0 ;; esac; return 1; }
export TOPK_SOURCE_DIR=$ROOT
FILTER=${SANITIZER_FILTER:-CudaAttention.ForwardRaggedDtypes:CudaAttention.ForwardPackedAndStrided:CudaSelect.*:CudaSparse.*:CudaTopk.RatiosForcedAndFull:CudaTopk.CausalPrefill:CudaTopk.ThresholdSmall:CudaTopk.SampleThresholds:CudaTopk.TiesAcrossSlices:CudaFlash.ForwardLayouts:CudaFlash.ForwardStridedCache:CudaBackward.Layouts:CudaBackward.OtherDtypesAndHeadDims:CudaSparseBackward.*:CudaMetrics.*:CudaTopkPrefill.GroupsAndRangesUnderSmallBudget:CudaTopkPrefill.FilteredPath:CudaTopkPrefill.FilteredTies:CudaModelOps.*:CudaApprox.Indexer*Reference:CudaApprox.IndexerScores*:CudaApprox.Quest*:CudaApprox.LayerNorm*}
LOG=$OUT/gpu-check.log
: >"$LOG"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true

step() { echo "== $1" | tee -a "$LOG"; }
st_tests=SKIP st_mem=SKIP st_race=SKIP st_bench=SKIP st_torch=SKIP st_dispatch=SKIP st_phases=SKIP st_engine=SKIP st_hf=SKIP st_py=SKIP st_dist=SKIP
has_torch() { [ "${SKIP_TORCH:-0}" != 1 ] && python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; }

if want tests; then
step "tests"
st_tests=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$TESTS" --gtest_filter="${TEST_FILTER:-*}" >"$OUT/cuda_tests.log" 2>&1; then st_tests=PASS; fi
grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$OUT/cuda_tests.log" | tee -a "$LOG"
fi

if want bench; then
step "topk bench cuda"
st_bench=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench cuda --reps "$REPS" --out "$OUT/bench_cuda.json" 2>&1 | tee -a "$LOG"; then
  [ -s "$OUT/bench_cuda.json" ] && st_bench=PASS
fi
fi
if want torch && has_torch; then
  step "torch baselines"
  if PYTHONUNBUFFERED=1 timeout "${STEP_TIMEOUT:-900}" python3 "$ROOT/bench/torch_baselines.py" --reps "$REPS" --out "$OUT/bench_torch.json" >/dev/null 2>>"$LOG"; then
    st_torch=PASS
  else
    st_torch=FAIL
  fi
fi

# The top-k decode pipelines forced one by one over a grid of (B, S), beside the rule's choice
# (topk/pipeline.cu): whether the rule picks the fastest on this GPU.
if want dispatch; then
step "top-k decode dispatch (bench cuda --only dispatch)"
st_dispatch=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench cuda --only dispatch --reps "$REPS" --out "$OUT/dispatch.json" 2>&1 | tee -a "$LOG"; then
  [ -s "$OUT/dispatch.json" ] && st_dispatch=PASS
fi
fi

# Top-k training attention (PHASES_CASE: S = 8K, rho = 1% unless set), phase by phase: Nsight
# Compute's time of every kernel of one `--reps 1` run, grouped by bench/phases.py (docs/benchmarks.md, "Training
# attention, forward + backward").
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if want phases && [ -x "$NCU" ]; then
step "top-k training attention by phase (ncu)"
st_phases=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$NCU" --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
     "$TOPK" bench cuda --only "$PHASES_CASE" --reps 1 >"$OUT/phases_kernels.csv" 2>>"$LOG" &&
   python3 "$ROOT/bench/phases.py" "$OUT/phases_kernels.csv" >"$OUT/phases.md" 2>>"$LOG"; then
  st_phases=PASS
fi
cat "$OUT/phases.md" >>"$LOG" 2>/dev/null
fi

# The engine on the issue's Llama-shaped model (12 layers, d 768, 12 query / 4 KV heads of 64,
# ffn 2048, vocabulary 32000): training steps at 4K and 16K, decode steps at 32K and 128K.
MODEL="--layers 12 --d-model 768 --heads 12 --kv-heads 4 --ffn 2048 --vocab 32000"
if want engine; then
step "topk bench train / generate (engine)"
st_engine=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench train --device cuda $MODEL --S 4096,16384 \
     --batch-tokens 16384 --steps 10 --warmup 3 --policy topk:ratio=0.01 --policy topk:k=256 \
     --json >"$OUT/bench_train.jsonl" 2>>"$LOG" &&
   timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench generate --device cuda $MODEL --S 32768,131072 \
     --batch 1,8 --json >"$OUT/bench_generate.jsonl" 2>>"$LOG"; then
  st_engine=PASS
fi
cat "$OUT/bench_train.jsonl" "$OUT/bench_generate.jsonl" >>"$LOG" 2>/dev/null
fi
if want hf && has_torch; then
step "Hugging Face baselines (engine)"
st_hf=FAIL
if PYTHONUNBUFFERED=1 timeout "${STEP_TIMEOUT:-900}" python3 "$ROOT/bench/hf_engine_baselines.py" ${HF_ARGS:-} --out "$OUT/bench_hf.json" >>"$LOG" 2>&1; then
  st_hf=PASS
fi
fi

# The Python package: torch ops on CUDA, streams, transformers' "topk" against sdpa and against
# the engine (tools/python_gpu_check.py; builds the package with pip into $OUT/topk-py).
if want python && has_torch; then
step "Python package (tools/python_gpu_check.py)"
st_py=FAIL
if [ -n "${TOPK_BIN:-}" ]; then PYBUILD=$TOPK_BIN; else PYBUILD=$BUILD; fi
if PYTHONUNBUFFERED=1 timeout "${STEP_TIMEOUT:-900}" python3 "$ROOT/tools/python_gpu_check.py" \
     --build "$PYBUILD" --topk "$TOPK" --out "$OUT" >"$OUT/python_gpu_check.log" 2>&1; then
  st_py=PASS
fi
tail -n 20 "$OUT/python_gpu_check.log" | tee -a "$LOG"
fi

# Data parallelism on every GPU of the host (2 or more): the two-rank test, then the step's
# throughput on 1 and on all GPUs with the same global batch, overlapped and not, beside PyTorch
# DDP on the same model and batches (docs/benchmarks.md, "Training on two GPUs").
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if want dist && [ "$NGPU" -ge 2 ]; then
step "data parallelism over $NGPU GPUs"
st_dist=FAIL
DIST="$MODEL --S 4096 --steps 10 --warmup 3 --json"
nvidia-smi topo -m >"$OUT/nvidia-topo.txt" 2>&1 || true
: >"$OUT/bench_dist.jsonl"
if timeout "${STEP_TIMEOUT:-900}" "$TESTS" --gtest_filter='CudaDist.*' >"$OUT/dist_tests.log" 2>&1; then
  ok=1
  for bt in 32768 131072; do
    for n in 1 "$NGPU"; do
      timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench train --gpus "$n" $DIST --batch-tokens "$bt" >>"$OUT/bench_dist.jsonl" 2>>"$LOG" || ok=0
      [ "$n" -gt 1 ] && { timeout "${STEP_TIMEOUT:-900}" "$TOPK" bench train --gpus "$n" $DIST --batch-tokens "$bt" --no-overlap >>"$OUT/bench_dist.jsonl" 2>>"$LOG" || ok=0; }
      if has_torch; then
        PYTHONUNBUFFERED=1 timeout "${STEP_TIMEOUT:-900}" torchrun --standalone --nproc-per-node "$n" \
          "$ROOT/bench/ddp_baseline.py" $MODEL --S 4096 --batch-tokens "$bt" >>"$OUT/bench_dist.jsonl" 2>>"$OUT/ddp.log" || ok=0
      fi
    done
  done
  [ "$ok" = 1 ] && st_dist=PASS
fi
grep -E "^\[  (PASSED|FAILED|SKIPPED) |two ranks vs one GPU" "$OUT/dist_tests.log" | tee -a "$LOG"
cat "$OUT/bench_dist.jsonl" >>"$LOG"
fi

# memcheck and racecheck are steps of their own (racecheck takes minutes on the indexer-loss
# test alone); `sanitize` names both. A timed-out run reads FAIL: see the log's last test.
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if want sanitize || want memcheck; then
step "compute-sanitizer memcheck ($FILTER)"
st_mem=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$SAN" --tool memcheck --error-exitcode 3 "$TESTS" --gtest_filter="$FILTER" >"$OUT/memcheck.log" 2>&1; then st_mem=PASS; fi
tail -n 3 "$OUT/memcheck.log" | tee -a "$LOG"
fi
if want sanitize || want racecheck; then
step "compute-sanitizer racecheck ($FILTER)"
st_race=FAIL
if timeout "${STEP_TIMEOUT:-900}" "$SAN" --tool racecheck --error-exitcode 3 "$TESTS" --gtest_filter="$FILTER" >"$OUT/racecheck.log" 2>&1; then st_race=PASS; fi
tail -n 3 "$OUT/racecheck.log" | tee -a "$LOG"
fi

echo
echo "| step | result |"
echo "|---|---|"
if want tests; then  # an $OUT reused from an earlier run may hold a stale test log
  echo "| CUDA tests | $st_tests ($(grep -c '^\[       OK \]' "$OUT/cuda_tests.log") ok, $(grep -c '^\[  FAILED  \] [A-Z]' "$OUT/cuda_tests.log") failed) |"
else
  echo "| CUDA tests | $st_tests |"
fi
echo "| memcheck | $st_mem |"
echo "| racecheck | $st_race |"
echo "| bench cuda | $st_bench |"
echo "| torch baselines | $st_torch |"
echo "| decode dispatch | $st_dispatch |"
echo "| phases (ncu) | $st_phases |"
echo "| engine benchmarks | $st_engine |"
echo "| HF engine baselines | $st_hf |"
echo "| Python package | $st_py |"
echo "| data parallelism ($NGPU GPUs) | $st_dist |"
if [ "$st_bench" = PASS ] && [ "$st_torch" = PASS ]; then
  echo
  python3 "$ROOT/bench/join_bench.py" "$OUT/bench_cuda.json" "$OUT/bench_torch.json" | tee "$OUT/summary.md"
fi
if [ "$st_phases" = PASS ]; then
  echo
  echo "top-k training attention, $PHASES_CASE, ms per forward / backward (Nsight Compute):"
  cat "$OUT/phases.md"
fi
if [ "$st_engine" = PASS ]; then
  echo
  python3 "$ROOT/bench/join_engine.py" "$OUT/bench_train.jsonl" "$OUT/bench_generate.jsonl" \
    "$OUT/bench_hf.json" | tee "$OUT/engine_summary.md"
fi
if [ "$st_dist" = PASS ]; then
  echo
  python3 "$ROOT/bench/join_dist.py" "$OUT/bench_dist.jsonl" | tee "$OUT/dist_summary.md"
fi
case "$st_tests$st_mem$st_race$st_dist" in *FAIL*) exit 1 ;; esac
