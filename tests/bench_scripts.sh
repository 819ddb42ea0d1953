#!/usr/bin/env bash
# The benchmark scripts that need no GPU: bench/phases.py on a recorded Nsight Compute summary
# (one H200 run of `topk bench cuda --only fwdbwd_topk_r0.01_S8192 --reps 1`), and its error
# on a file that is not one.
set -euo pipefail
SRC=$1
DATA=$SRC/tests/data/ncu/fwdbwd_topk_r0.01_S8192.csv
out=$(python3 "$SRC/bench/phases.py" "$DATA")
expect() {
  if ! grep -qF -- "$1" <<<"$out"; then
    echo "bench/phases.py: expected the line '$1' in:"; echo "$out"; exit 1
  fi
}
# Each part is its kernels' time over the case's 4 forwards or 2 backwards; Delta is per call.
expect "| forward | score products (cuBLAS) | 35.9 |"
expect "| forward | select + softmax + P V, warp per (row, head) | 96.9 |"
expect "| backward | Delta (bwd_prep_kernel, one call) | 3.4 |"
expect "| backward | dK, dV | 83.0 |"
expect "| forward | total | 132.8 |"
expect "| backward | total | 200.9 |"
# The dense baseline's flash kernels are left out.
if grep -q flash <<<"$out"; then echo "bench/phases.py: counted the dense baseline"; exit 1; fi
# Halving the counts doubles the times (Delta stays per call).
out=$(python3 "$SRC/bench/phases.py" "$DATA" --forwards 2 --backwards 1)
expect "| forward | total | 265.6 |"
expect "| backward | total | 398.5 |"
# Not an ncu summary: a clear error and a non-zero exit.
if err=$(python3 "$SRC/bench/phases.py" "$SRC/README.md" 2>&1); then
  echo "bench/phases.py: accepted a file that is not an ncu summary"; exit 1
fi
grep -q "no 'Kernel Name' column" <<<"$err" || { echo "unexpected error: $err"; exit 1; }
echo "bench scripts: ok"
