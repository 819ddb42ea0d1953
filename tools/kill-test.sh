#!/usr/bin/env bash
# Kills `topk train` with SIGKILL at random moments (a checkpoint is written every step, so many
# kills land inside a checkpoint write), then checks after each kill that a checkpoint loads and
# that the run resumes from it; at the end, that the resumed run's model is byte for byte the
# model of the same run never interrupted.
#   tools/kill-test.sh BIN [KILLS]      (default 20 kills)
set -euo pipefail
bin=$1
kills=${2:-20}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() {  # run file for out folder $1
  cat <<EOF2
{"out": "$1", "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
 "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2}, "task": {"name": "copy", "min_len": 4, "max_len": 8, "alphabet": 8},
 "attention": "topk:k=4", "steps": 40, "batch_tokens": 128, "lr": 0.003, "seed": 5,
 "checkpoint_every": 1, "log_every": 0}
EOF2
}
run "$dir/killed" >"$dir/killed.json"
run "$dir/whole" >"$dir/whole.json"
for i in $(seq 1 "$kills"); do
  "$bin" train --config "$dir/killed.json" >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Whatever the moment of the kill, a whole checkpoint is there and generates.
  ck="$dir/killed/checkpoint"
  [ -f "$ck/trainer_state.json" ] || ck="$dir/killed/checkpoint.old"
  if [ -f "$ck/trainer_state.json" ]; then
    "$bin" generate --model "$ck" --prompt 'abc|' --max-new 2 >/dev/null 2>&1 ||
      { echo "kill $i: checkpoint $ck does not load"; exit 1; }
    echo "kill $i: checkpoint at step $(grep -o '"step": *[0-9]*' "$ck/trainer_state.json" | grep -o '[0-9]*$')"
  else
    echo "kill $i: before the first checkpoint"
  fi
done
"$bin" train --config "$dir/killed.json" >/dev/null 2>&1
"$bin" train --config "$dir/whole.json" >/dev/null 2>&1
if cmp -s "$dir/killed/checkpoint/model.safetensors" "$dir/whole/checkpoint/model.safetensors"; then
  echo "kill-test: ok ($kills kills; the resumed model equals the uninterrupted one byte for byte)"
else
  echo "kill-test: the resumed model differs from the uninterrupted one"
  exit 1
fi
