#!/usr/bin/env bash
# A short end-to-end run of the topk tool: train (interrupted, then resumed), generate with
# top-k decoding, evaluate three policies in batches, write task examples. make test-asan runs it under the
# sanitizers, where any report (a leak included) ends the tool with a non-zero status.
#   tools/smoke.sh BIN DIR
set -euo pipefail
bin=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
cat >"$dir/run.json" <<EOF2
{"out": "$dir/run",
 "model": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "max_position_embeddings": 64, "tie_word_embeddings": true},
 "task": {"name": "ar", "length": 48, "min_length": 40, "loss": "question"},
 "attention": "topk:k=8,share=group", "steps": 6, "batch_tokens": 128, "grad_accum": 2,
 "lr": 0.01, "warmup": 2, "seed": 1, "checkpoint_every": 3, "log_every": 3, "eval_examples": 2}
EOF2
"$bin" train --config "$dir/run.json" --stop-after 3
"$bin" train --config "$dir/run.json"
"$bin" generate --model "$dir/run/checkpoint" --prompt 'Pairs: ' --attention topk:k=4 --max-new 8
"$bin" generate --model "$dir/run/checkpoint" --ids 256,65,66 --temperature 0.8 --top-k 5 --max-new 4
"$bin" eval --model "$dir/run/checkpoint" --tasks ar --lengths 48 --samples 2 --quiet \
  --policy full --policy topk:ratio=0.25 --policy oracle:k=4,precision=0.5 --batch 2 \
  --out "$dir/eval"
"$bin" data --task passkey --length 256 --n 2 --model "$dir/run/checkpoint" \
  --out "$dir/passkey.jsonl"
echo "smoke: ok"
