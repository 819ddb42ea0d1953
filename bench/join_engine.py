#!/usr/bin/env python3
"""Joins the engine benchmarks (`topk bench train --json`, `topk bench generate --json`) with
bench/hf_engine_baselines.py's output into markdown tables and the targets of the GPU engine.

  python3 bench/join_engine.py bench_train.jsonl bench_generate.jsonl [bench_hf.json]
"""
import json
import sys


def rows(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    except OSError:
        return []


def main():
    train, gen = rows(sys.argv[1]), rows(sys.argv[2])
    hf = []
    if len(sys.argv) > 3:
        try:
            hf = json.load(open(sys.argv[3]))["rows"]
        except (OSError, KeyError, ValueError):
            hf = []
    hft = {(r["S"], r["mode"]): r for r in hf if r["name"] == "hf_train_step"}
    hfg = {(r["B"], r["S"]): r for r in hf if r["name"] == "hf_decode_step"}

    print("Training step (16K tokens per step, packed sequences of length S):\n")
    print("| S | system | step ms | tok/s | TFLOP/s | MFU | memory GiB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in train:
        print(f"| {r['S']} | topk {r['policy']} | {r['median_step_ms']:.1f} | {r['tokens_per_s']:.0f} | "
              f"{r['tflops']:.0f} | {r['mfu']:.2f} | {r['mem_gib']:.1f} |")
    for (S, mode), r in sorted(hft.items()):
        print(f"| {S} | HF {mode} | {r['median_step_ms']:.1f} | {r['tokens_per_s']:.0f} | | | "
              f"{r['peak_mem_gib']:.1f} (peak) |")

    print("\nDecode step (one token per sequence):\n")
    print("| B | S | system | step ms | tok/s | floor ms | time / floor |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in gen:
        print(f"| {r['B']} | {r['S']} | topk {r['policy']} | {r['median_step_ms']:.2f} | "
              f"{r['tokens_per_s']:.0f} | {r['floor_ms']:.2f} | {r['ratio_vs_floor']:.2f} |")
    for (B, S), r in sorted(hfg.items()):
        print(f"| {B} | {S} | HF (SDPA, DynamicCache) | {r['median_step_ms']:.2f} | "
              f"{r['tokens_per_s']:.0f} | | |")

    print("\n| target | measured | met |")
    print("|---|---:|:-:|")

    def row(text, value, ok):
        print(f"| {text} | {value} | {'yes' if ok else 'no'} |")

    full = {r["S"]: r for r in train if r["policy"] == "full"}
    for S, mode, want in ((4096, "eager", 1.2), (4096, "compile", 1.1), (16384, "eager", 1.2)):
        if S in full and (S, mode) in hft:
            x = full[S]["tokens_per_s"] / hft[(S, mode)]["tokens_per_s"]
            row(f"training tok/s at {S // 1024}K, full attention, >= {want}x HF {mode}", f"{x:.2f}x", x >= want)
    g = {(r["B"], r["S"], r["policy"]): r for r in gen}
    f8 = g.get((8, 131072, "full"))
    t8 = g.get((8, 131072, "topk:k=2048"))
    if f8:
        row("decode B=8 S=128K, full: within 2x of the memory floor", f"{f8['ratio_vs_floor']:.2f}x",
            f8["ratio_vs_floor"] <= 2.0)
    if f8 and t8:
        x = f8["median_step_ms"] / t8["median_step_ms"]
        row("decode B=8 S=128K: top-k (k=2048) >= 1.5x faster than our full", f"{x:.2f}x", x >= 1.5)
    if f8 and (8, 131072) in hfg:
        x = hfg[(8, 131072)]["median_step_ms"] / f8["median_step_ms"]
        print(f"| (reference) HF decode step / ours, B=8 S=128K full | {x:.1f}x | |")


if __name__ == "__main__":
    main()
