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
# Eight GPUs: the two base models train side by side on four GPUs each (data-parallel), and
# each evaluation holds one GPU.
python3 "$src/tools/experiments/run.py" all --config "$work/gpu.json" --dry-run --gpus 8 \
  --out "$work/results" >"$work/gpu8.log"
grep -q "CUDA_VISIBLE_DEVICES=0,1,2,3 .*topk train --config .*/base-s2/run.json .* --gpus 4" "$work/gpu8.log" ||
  fail "gpu --gpus 8: the base models do not take four GPUs each"
grep -q "CUDA_VISIBLE_DEVICES=0 .*topk eval " "$work/gpu8.log" || fail "gpu --gpus 8: no evaluation on one GPU"
if grep "topk eval " "$work/gpu8.log" | grep -q -- "--gpus"; then fail "gpu --gpus 8: an evaluation asks for several GPUs"; fi
# The GPU pool itself (real processes): 3 GPUs, tasks of 1 and 2 GPUs, never two on one GPU.
CUDA_VISIBLE_DEVICES=0,1,2 python3 - "$src" "$work" <<'PY' || fail "the GPU pool shared a GPU or lost a task"
import sys, types, time
sys.path.insert(0, sys.argv[1] + "/tools/experiments")
import run
w = sys.argv[2]
a = types.SimpleNamespace(topk="x", dry_run=False, device="cuda", jobs=None, gpus=None,
                          tables_only=False, time_limit=None, t0=time.time(), study="all")
r = run.Runner({}, a)
assert r.gpu_ids == ["0", "1", "2"], r.gpu_ids
sh = 'echo "$CUDA_VISIBLE_DEVICES $(date +%s.%N)"; sleep 0.3; echo "$(date +%s.%N)"'
tasks = [(f"t{i}", ["sh", "-c", sh], f"{w}/pool/t{i}.log", 1 + i % 2) for i in range(8)]
assert all(x is not None for x in r.parallel(tasks))
spans = []
for _, _, log, n in tasks:
    lines = open(log).read().split("\n")
    gpus, t0 = lines[2].split()
    assert len(gpus.split(",")) == n, (gpus, n)
    spans.append((set(gpus.split(",")), float(t0), float(lines[3])))
for i, (g1, a0, a1) in enumerate(spans):
    for g2, b0, b1 in spans[i + 1:]:
        assert not (g1 & g2) or a1 <= b0 or b1 <= a0, "two tasks on one GPU at once"
PY
grep -q "sft-topk-k8-b1-s1/run.json" "$work/cpu.log" || fail "cpu: the fixed-k SFT variant is not trained"
# The demo and gpu scales train a Lightning Indexer in both stages and evaluate it on the
# precision curve.
for scale in demo gpu; do
  grep -q "indexer-dense-b1/run.json" "$work/$scale.log" || fail "$scale: the indexer's dense stage is not trained"
  grep -q "indexer-sparse-b1/run.json" "$work/$scale.log" || fail "$scale: the indexer's sparse stage is not trained"
  grep -q "topk eval --model .*indexer-sparse-b1/checkpoint .*;indexer' .*/precision/$scale/" "$work/$scale.log" ||
    fail "$scale: the precision study does not evaluate the trained indexer"
done
# On GPUs an evaluation of several lengths runs as one job per length, merged when all are done
# (a stand-in topk writes the CSVs; two GPUs; the base is a given folder, so nothing trains).
cat >"$work/fake-topk" <<'SH'
#!/usr/bin/env bash
[ "$1" = eval ] || exit 3
while [ $# -gt 0 ]; do
  case $1 in --tasks) T=$2 ;; --lengths) L=$2 ;; --policies) P=$2 ;; --out) O=$2 ;; esac; shift
done
mkdir -p "$O"
echo "task,length,policy,examples,score,rho,precision,mass,entropy,entropy_norm,decode_steps,context_tokens,seconds" >"$O/results.csv"
echo "task,length,policy,layer,head,precision,mass,entropy,entropy_norm" >"$O/layers.csv"
IFS=';' read -ra pols <<<"$P"
for t in ${T//,/ }; do for l in ${L//,/ }; do for p in "${pols[@]}"; do
  echo "$t,$l,$p,2,50.0000,0.1000,1.0000,0.9000,1.0000,0.5000,4,$l,0.1" >>"$O/results.csv"
  echo "$t,$l,$p,0,all,1.0000,0.9000,1.0000,0.5000" >>"$O/layers.csv"
done; done; done
sleep 0.3
SH
chmod +x "$work/fake-topk"
python3 - "$src" "$work" <<'PY'
import json, sys
src, w = sys.argv[1], sys.argv[2]
c = json.load(open(f"{src}/tools/experiments/demo-base.json"))
c.update(scale="split", device="cuda", runs=f"{w}/runs-split")
c["eval"].update(tasks=["ar"], lengths=[64, 128], samples=2)
json.dump(c, open(f"{w}/split.json", "w"))
PY
for i in 1 2; do
  CUDA_VISIBLE_DEVICES=0,1 python3 "$src/tools/experiments/run.py" rho --config "$work/split.json" \
    --topk "$work/fake-topk" --out "$work/split-results" >"$work/split$i.log" 2>&1 ||
    { cat "$work/split$i.log"; fail "split evaluations: run $i failed"; }
done
e=$work/split-results/rho/split/eval/base-s1
[ -s "$e/L64/results.csv" ] && [ -s "$e/L128/results.csv" ] || fail "split evaluations: no per-length parts"
[ "$(grep -c '^ar,64,' "$e/results.csv")" -ge 1 ] && [ "$(grep -c '^ar,128,' "$e/results.csv")" -ge 1 ] &&
  [ "$(grep -c '^task,' "$e/results.csv")" = 1 ] || fail "split evaluations: merged results.csv wrong"
[ "$(grep -c '^task,' "$e/layers.csv")" = 1 ] || fail "split evaluations: merged layers.csv wrong"
grep -q "CUDA_VISIBLE_DEVICES=[01] .*fake-topk eval .*--lengths 128 " "$work/split1.log" || fail "split evaluations: not one GPU a part"
[ -s "$work/split-results/rho/split/table.md" ] || fail "split evaluations: no table"
if grep -q "fake-topk eval" "$work/split2.log"; then fail "split evaluations: a finished job ran again"; fi

# --time-limit: a training run stops at a step with a checkpoint, the invocation exits 75, and
# the same command continues from the checkpoint (its time adding up). Needs the topk binary.
if [ -n "${3:-}" ]; then
  python3 - "$src" "$work" <<'PY'
import json, sys
src, w = sys.argv[1], sys.argv[2]
c = json.load(open(f"{src}/tools/experiments/cpu.json"))
run = json.load(open(f"{src}/{c['base']['run']}"))
run["steps"] = 1000000
json.dump(run, open(f"{w}/long-base.json", "w"))
c.update(runs=f"{w}/runs-limit", jobs=1)
c["base"] = {"run": f"{w}/long-base.json", "seeds": [1]}
json.dump(c, open(f"{w}/limit.json", "w"))
PY
  for i in 1 2; do
    rc=0
    python3 "$src/tools/experiments/run.py" models --config "$work/limit.json" --topk "$3" \
      --time-limit 62 --out "$work/results" >"$work/limit$i.log" 2>&1 || rc=$?
    [ "$rc" = 75 ] || { cat "$work/limit$i.log"; fail "--time-limit: exit $rc, expected 75"; }
    grep -qE "stop-after-seconds [0-9]+( |$)" "$work/limit$i.log" || fail "--time-limit: training got no stop time"
  done
  grep -q "resuming from .*base-s1/checkpoint" "$work/runs-limit/base-s1/train.log" ||
    fail "--time-limit: the second invocation did not resume"
  python3 - "$work/runs-limit/base-s1" <<'PY' || fail "--time-limit: checkpoint or time.json wrong"
import json, sys
st = json.load(open(sys.argv[1] + "/checkpoint/trainer_state.json"))
t = json.load(open(sys.argv[1] + "/time.json"))
assert st["step"] > 0 and t["finished"] is None and t["seconds"] > 10, (st["step"], t)
PY
fi
echo "experiments: every scale plans every study"
