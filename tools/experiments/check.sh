#!/usr/bin/env bash
# The CTest `experiments`: every study of every training scale (cpu, gpu, demo) plans its
# commands (run.py --dry-run), so that a change to the scale files, the run files or the CLI's
# flags that breaks a study fails here and not an hour into a GPU run. Runs nothing but python.
#   tools/experiments/check.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
work=$2
rm -rf "$work" && mkdir -p "$work"
fail() { echo "experiments: $*"; exit 1; }
for scale in cpu gpu demo; do
  log=$work/$scale.log
  # Models in a fresh folder, so that the plan trains them all whatever runs/ holds here.
  python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['runs']=sys.argv[2]; json.dump(c, open(sys.argv[3], 'w'))" \
    "$src/tools/experiments/$scale.json" "$work/runs-$scale" "$work/$scale.json"
  python3 "$src/tools/experiments/run.py" all --config "$work/$scale.json" --dry-run \
    --out "$work/results" >"$log"
  dev=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" \
        "$src/tools/experiments/$scale.json")
  grep -q "topk train --config .* --device $dev" "$log" || fail "$scale: no training on $dev"
  for s in rho sft precision entropy adapt; do
    grep -q "topk eval .*/$s/$scale/eval/.* --device $dev" "$log" || fail "$scale: no $s eval on $dev"
  done
  # Batched decoding where the scale file asks for it (every eval of the scale).
  b=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['eval'].get('batch') or 0)" \
      "$src/tools/experiments/$scale.json")
  if [ "$b" -gt 0 ]; then
    n=$(grep -c "topk eval " "$log"); m=$(grep -c "topk eval .* --batch $b" "$log")
    [ "$n" = "$m" ] || fail "$scale: $m of $n evals pass --batch $b"
  fi
  # Every run file a study names exists and is read (an SFT variant of "more" included).
  grep -q "prefill policy" "$log" || fail "$scale: the SFT study lost its top-k prefill"
  grep -q "adapt=entropy" "$log" || fail "$scale: the adapt study lost adapt=entropy"
  grep -q "oracle:k=" "$log" || fail "$scale: the precision study lost the oracle"
done
grep -q "sft-topk-k8-b1-s1/run.json" "$work/cpu.log" || fail "cpu: the fixed-k SFT variant is not trained"
# The demo scale trains its Lightning Indexer in both stages and evaluates it on the precision curve.
grep -q "indexer-dense-b1/run.json" "$work/demo.log" || fail "demo: the indexer's dense stage is not trained"
grep -q "indexer-sparse-b1/run.json" "$work/demo.log" || fail "demo: the indexer's sparse stage is not trained"
grep -q "topk eval --model .*indexer-sparse-b1/checkpoint .*;indexer' .*/precision/demo/" "$work/demo.log" ||
  fail "demo: the precision study does not evaluate the trained indexer"
echo "experiments: every scale plans every study"
