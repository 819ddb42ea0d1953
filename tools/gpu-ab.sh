#!/usr/bin/env bash
# Builds side by side on one GPU: `topk bench cuda --only CASES` for each build, the builds
# interleaved in rounds (a slow moment of the machine then touches one round of each, not one
# build), joined by bench/ab_table.py: each case's fastest round, ratios against the first build.
#
#   tools/gpu-ab.sh CASES LABEL=DIR[,VAR=VALUE...] LABEL=DIR[,VAR=VALUE...] ...
#
# DIR holds the build's `topk` (a build folder, or a folder of prebuilt binaries); VAR=VALUE
# pairs are set for that build's runs only, so one binary can also be compared with itself
# under other settings (TOPK_CUDA_TOPK_PATH=filtered, TOPK_CUDA_WARP_CAP=1024, ...).
# Environment: ROUNDS (default 2), REPS (timed runs per case, default 2), OUT (default ./out).
# Writes $OUT/ab_LABEL_ROUND.json and .log, and $OUT/ab.md (the table, printed after each round).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
  echo "usage: tools/gpu-ab.sh CASES LABEL=DIR[,VAR=VALUE...] ..." >&2
  exit 2
fi
CASES=$1
shift
OUT=${OUT:-./out}
ROUNDS=${ROUNDS:-2}
REPS=${REPS:-2}
mkdir -p "$OUT"
# Each spec parsed once: its label, its folder and its settings (comma-separated, one string).
labels=() dirs=() settings=()
for spec in "$@"; do
  label=${spec%%=*}
  rest=${spec#*=}
  dir=${rest%%,*}
  if [ -z "$label" ] || [ "$label" = "$spec" ] || [ ! -x "$dir/topk" ]; then
    echo "gpu-ab.sh: '$spec': need LABEL=DIR with an executable DIR/topk" >&2
    exit 2
  fi
  labels+=("$label") dirs+=("$dir")
  if [ "$rest" != "$dir" ]; then settings+=("${rest#*,}"); else settings+=(""); fi
done
files=()
for round in $(seq 1 "$ROUNDS"); do
  for b in "${!labels[@]}"; do
    label=${labels[$b]}
    vars=()
    [ -n "${settings[$b]}" ] && IFS=, read -r -a vars <<<"${settings[$b]}"
    json=$OUT/ab_${label}_$round.json
    if ! env ${vars[@]+"${vars[@]}"} "${dirs[$b]}/topk" bench cuda --reps "$REPS" --only "$CASES" --out "$json" \
         >"$OUT/ab_${label}_$round.log" 2>&1; then
      echo "gpu-ab.sh: $label, round $round failed: $OUT/ab_${label}_$round.log" >&2
      exit 1
    fi
    files+=("$label=$json")
  done
  # The table after every round, so that a run cut short still prints one.
  echo "after round $round of $ROUNDS:"
  python3 "$ROOT/bench/ab_table.py" "${files[@]}" | tee "$OUT/ab.md"
done
