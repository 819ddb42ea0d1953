#!/usr/bin/env python3
"""Joins the data-parallel rows of tools/gpu-check.sh (bench_dist.jsonl: `topk bench train --gpus N
--json` and bench/ddp_baseline.py) into one markdown table: tokens/s per global batch and GPU
count, the scaling from one GPU in the same run, and topk against PyTorch DDP.

  python3 bench/join_dist.py bench_dist.jsonl
"""
import json
import sys


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
    ours, ddp = {}, {}
    for r in rows:
        key = (r["tokens_per_step"], r["gpus"])
        if r["name"] == "train_step_dp":
            ours[key + (r["overlap"],)] = r
        elif r["name"] == "ddp_train_step":
            ddp[key] = r
    print("| tokens/step | GPUs | topk step ms | topk tokens/s | scaling | no overlap | "
          "DDP step ms | DDP tokens/s | DDP scaling | topk / DDP |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (tokens, gpus, overlap), r in sorted(ours.items()):
        if not overlap:
            continue
        one = ours.get((tokens, 1, True))
        flat = ours.get((tokens, gpus, False))
        d, d1 = ddp.get((tokens, gpus)), ddp.get((tokens, 1))
        cell = lambda x, f: f.format(x) if x is not None else "-"
        print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            int(tokens), gpus, cell(r["median_step_ms"], "{:.1f}"),
            cell(r["tokens_per_s"], "{:,.0f}"),
            cell(r["tokens_per_s"] / one["tokens_per_s"] if one else None, "{:.2f}x"),
            cell(flat["tokens_per_s"] / one["tokens_per_s"] if flat and one and gpus > 1 else None,
                 "{:.2f}x"),
            cell(d["median_step_ms"] if d else None, "{:.1f}"),
            cell(d["tokens_per_s"] if d else None, "{:,.0f}"),
            cell(d["tokens_per_s"] / d1["tokens_per_s"] if d and d1 else None, "{:.2f}x"),
            cell(r["tokens_per_s"] / d["tokens_per_s"] if d else None, "{:.2f}x")))


if __name__ == "__main__":
    main()
