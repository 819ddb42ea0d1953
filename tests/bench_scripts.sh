#!/usr/bin/env bash
# The benchmark scripts that need no GPU, on recorded outputs: bench/phases.py on Nsight Compute
# summaries (`topk bench cuda --only fwdbwd_topk_r0.01_S8192 --reps 1` on an H200, the 32K case
# and a group-shared case on an H100) and its error on a file that is not one; bench/join_bench.py's training targets
# on `topk bench cuda` and bench/torch_baselines.py JSON (the faster SDPA backend, cuDNN there,
# is the baseline); bench/sample_margin.py's simulation of the warp select's sampled threshold;
# tools/gpu-ab.sh with bench/ab_table.py on recorded builds.
set -euo pipefail
SRC=$1
DATA=$SRC/tests/data/ncu/fwdbwd_topk_r0.01_S8192.csv
out=$(python3 "$SRC/bench/phases.py" "$DATA")
expect() {
  if ! grep -qF -- "$1" <<<"$out"; then
    echo "bench scripts: expected the line '$1' in:"; echo "$out"; exit 1
  fi
}
# The phases of a recorded summary, into out; a kernel left in no phase fails the script.
phases_of() {
  out=$(python3 "$SRC/bench/phases.py" "$SRC/tests/data/ncu/$1" 2>&1)
  if grep -q "not in any phase" <<<"$out"; then echo "bench/phases.py: left kernels unplaced in $1:"; echo "$out"; exit 1; fi
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
# The 32K case on an H100 (main 7600d73): the warpgroup flash kernels of the dense baseline are
# left out and cuBLAS's matrix-vector kernel (a last column of fewer than 8 keys) counts as a
# score product; no kernel is left unplaced.
phases_of fwdbwd_topk_r0.01_S32768.csv
expect "| forward | score products (cuBLAS) | 155.8 |"
expect "| backward | dK, dV | 278.4 |"
expect "| backward | total | 583.8 |"
# The same case after the backward learnt to skip each list's padding (an H100): the kernels that
# find the used entries belong to the inversion.
phases_of fwdbwd_topk_r0.01_S32768_used_entries.csv
expect "| backward | invert the selection (used entries, keys, sort, runs, scan) | 33.2 |"
expect "| backward | total | 446.1 |"
# Group-shared lists at 8K (an H100): the group ranking and the split attend are phases of the
# forward, and nothing is left unplaced.
phases_of fwdbwd_topk_group_r0.01_S8192.csv
expect "| forward | group ranking (row lse + summed probabilities) | 138.7 |"
expect "| forward | attend over the lists (split + combine) | 48.4 |"
expect "| forward | total | 316.4 |"
expect "| backward | dQ | 16.9 |"
# The same case once the group select is a warp per (row, KV head) and the ranking one kernel
# (an H100): the group instance of the warp kernel is its own phase.
phases_of fwdbwd_topk_group_r0.01_S8192_fused_rank.csv
expect "| forward | group select + each head's softmax + P V, warp per (row, KV head) | 34.4 |"
expect "| forward | group ranking (row lse + summed probabilities) | 66.8 |"
expect "| forward | total | 144.5 |"
# Not an ncu summary: a clear error and a non-zero exit.
if err=$(python3 "$SRC/bench/phases.py" "$SRC/README.md" 2>&1); then
  echo "bench/phases.py: accepted a file that is not an ncu summary"; exit 1
fi
grep -q "no 'Kernel Name' column" <<<"$err" || { echo "unexpected error: $err"; exit 1; }

# join_bench.py: each target against the faster SDPA backend of its length.
out=$(python3 "$SRC/bench/join_bench.py" "$SRC/tests/data/bench/fwdbwd_ours.json" "$SRC/tests/data/bench/fwdbwd_torch.json")
expect "| S=32768, rho=1%: forward + backward >= 2x faster than SDPA (sdpa_cudnn_fwdbwd_S32768) | 0.21x | no |"
expect "| S=131072, rho=1%: forward + backward >= 3x faster than SDPA (sdpa_cudnn_fwdbwd_S131072) | 0.16x | no |"
expect "| S=8192: our dense forward + backward within 15% of SDPA (ours / sdpa_cudnn_fwdbwd_S8192) | 2.61 | no |"
expect "| sdpa_fwdbwd_S8192 (torch) | 25.58 | 100.20 | 307 | 0.59x | | |"
# Without the cuDNN cases the flash backend is the baseline.
flash_only=$(mktemp)
python3 - "$SRC/tests/data/bench/fwdbwd_torch.json" >"$flash_only" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["train"] = [c for c in t["train"] if "cudnn" not in c["name"]]
print(json.dumps(t))
PY
out=$(python3 "$SRC/bench/join_bench.py" "$SRC/tests/data/bench/fwdbwd_ours.json" "$flash_only")
rm -f "$flash_only"
expect "| S=32768, rho=1%: forward + backward >= 2x faster than SDPA (sdpa_fwdbwd_S32768) | 0.36x | no |"
# sample_margin.py: the warp select's sampled threshold on seeded Gaussian rows. With the
# kernels' margin of 8 and a sample of cap keys, half the lists of 24K-key rows overflow 768
# slots; a margin of 1 leaves a tenth, and a sample of 2 cap keys none.
out=$(python3 "$SRC/bench/sample_margin.py" --cap 768 --rows 24576 --take 246 --margin 8 --margin 1 --trials 20)
expect "| 8 | 768 | 25 | 0.0% | 55.0% | 799 |"
expect "| 1 | 768 | 18 | 0.0% | 10.0% | 599 |"
out=$(python3 "$SRC/bench/sample_margin.py" --cap 768 --rows 24576 --take 246 --sample-cap 1536 --margin 1 --trials 20)
expect "| 1 | 1536 | 29 | 0.0% | 0.0% | 470 |"
if err=$(python3 "$SRC/bench/sample_margin.py" --cap 10 --rows 24576 --take 246 2>&1); then
  echo "bench/sample_margin.py: accepted a capacity below the budget"; exit 1
fi
grep -q "cap >= --take" <<<"$err" || { echo "unexpected error: $err"; exit 1; }
# gpu-ab.sh and ab_table.py: a stand-in `topk` that writes the recorded JSON its build's
# AB_FIXTURE names (so each build's VAR=VALUE pairs must reach its runs), two rounds each.
ab=$(mktemp -d)
cat >"$ab/topk" <<'SH'
#!/usr/bin/env bash
while [ $# -gt 0 ]; do [ "$1" = --out ] && cp "$AB_FIXTURE" "$2"; shift; done
SH
chmod +x "$ab/topk"
out=$(OUT=$ab/out bash "$SRC/tools/gpu-ab.sh" fwdbwd_topk_r0.01 \
        "main=$ab,AB_FIXTURE=$SRC/tests/data/bench/ab_main_h100.json" \
        "kvhead=$ab,AB_FIXTURE=$SRC/tests/data/bench/ab_kvhead_h100.json")
expect "| case | main | kvhead | kvhead / main |"
expect "| fwdbwd_topk_r0.01_S32768 forward + backward (ms) | 893.7 | 1054.7 | 1.180 |"
expect "| fwdbwd_topk_r0.01_S8192 forward (ms) | 108.0 | 115.0 | 1.065 |"
[ -s "$ab/out/ab_kvhead_2.json" ] || { echo "gpu-ab.sh: no second round"; exit 1; }
if err=$(bash "$SRC/tools/gpu-ab.sh" fwdbwd "main=$ab/none" 2>&1); then
  echo "gpu-ab.sh: accepted a folder without topk"; exit 1
fi
grep -q "executable DIR/topk" <<<"$err" || { echo "unexpected error: $err"; exit 1; }
# Rounds of one label: each case keeps its fastest (here the main build's times, the slower
# build's file given as the later round).
out=$(python3 "$SRC/bench/ab_table.py" "x=$SRC/tests/data/bench/ab_main_h100.json" "x=$SRC/tests/data/bench/ab_kvhead_h100.json")
expect "| fwdbwd_topk_r0.01_S32768 forward + backward (ms) | 893.7 |"
if err=$(python3 "$SRC/bench/ab_table.py" "main=$SRC/tests/data/bench/ab_main_h100.json" \
           "torch=$SRC/tests/data/bench/fwdbwd_torch.json" 2>&1); then
  echo "ab_table.py: accepted a file that is not topk bench cuda output"; exit 1
fi
grep -q "not \`topk bench cuda\` output" <<<"$err" || { echo "unexpected error: $err"; exit 1; }
rm -rf "$ab"
echo "bench scripts: ok"
