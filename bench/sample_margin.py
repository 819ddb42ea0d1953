#!/usr/bin/env python3
"""How often the sampled threshold of the CUDA warp select misleads, simulated on random rows.

The warp select over stored score rows (src/attention/cuda/topk/stored_select_attend_warps.cu)
and the filtered path (topk/tile_filter.cu) take a threshold tau from a sample of a row's m
competing keys: groups of 8 consecutive keys spread evenly over the row, a 16th of it (the warp
select stops at its capacity of `--cap` keys), tau the sample_rank-th largest sampled key cut
to its top 16 bits, sample_rank = ceil(share + 3 sqrt(share)) + margin with share = take ns / m
and a margin of 8 (topk/warp_kth.cuh). The keys >= tau are the row's candidates: a list of
fewer than `take` keys ("short") or more than `--cap` ("overflow") sends the row to the exact
fallback, a second pass over the whole row. This script draws rows of Gaussian scores, applies
the same rule and counts both cases, for each margin asked and any sample size.

It explains the 1024-key tier's slowness at 32K keys: with take = 328, a quarter of the lists
overflow. A margin of 1 with a sample of 2 cap keys removes the overflows here, yet measured
slower on an H100 (docs/benchmarks.md, "Two changes measured and rejected"): what a simulated
count leaves out (the cost of each short list's fallback, the kernels' own timing) decides.

  bench/sample_margin.py --cap 1024 --rows 32768 --take 328 --margin 8 --margin 1
"""
import argparse
import array
import math
import random
import sys


def order_keys(xs):
    """The kernels' order_key: float32 bits mapped so that unsigned order is float order."""
    bits = memoryview(array.array("f", xs)).cast("B").cast("I")
    return [b ^ 0xFFFFFFFF if b >> 31 else b | 0x80000000 for b in bits]


def sample_positions(m, sample_cap):
    """The warp select's sample: `groups` groups of 8 keys, group g at floor(g (m - 8) / (groups - 1))
    in 32.32 fixed point, as the kernel computes it."""
    groups = min(sample_cap // 8, m // 128)
    stride = ((m - 8) << 32) // (groups - 1)
    return [((g * stride) >> 32) + j for g in range(groups) for j in range(8)]


def sample_rank(take, ns, m, margin):
    share = take * ns / m
    return math.ceil(share + 3.0 * math.sqrt(share)) + margin


def simulate(m, take, cap, sample_cap, margin, rows, seed):
    rng = random.Random(seed)
    pos = sample_positions(m, sample_cap)
    ns = len(pos)
    rk = sample_rank(take, ns, m, margin)
    short = overflow = 0
    kept_sum = 0
    for _ in range(rows):
        keys = order_keys([rng.gauss(0.0, 1.0) for _ in range(m)])
        if rk >= ns:
            kept = m  # tau keeps every key
        else:
            sampled = sorted((keys[p] for p in pos), reverse=True)
            tau = sampled[rk - 1] & 0xFFFF0000  # two radix digits: the bin's lower edge
            kept = sum(1 for k in keys if k >= tau)
        kept_sum += kept
        short += kept < take
        overflow += kept > cap
    return {"ns": ns, "rank": rk, "short": short / rows, "overflow": overflow / rows,
            "mean_kept": kept_sum / rows}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="competing keys of a row (m)")
    ap.add_argument("--take", type=int, required=True, help="keys the row selects")
    ap.add_argument("--cap", type=int, required=True, help="candidate slots of a warp (768, 1024, 1536)")
    ap.add_argument("--sample-cap", type=int, default=0,
                    help="most sampled keys (default: cap, the warp select's; the filtered path has none: pass a large value)")
    ap.add_argument("--margin", type=int, action="append", help="keys of margin in sample_rank (repeatable; default 8, the kernels')")
    ap.add_argument("--trials", type=int, default=200, help="random rows per margin")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.rows < 256 or a.take < 1 or a.take > a.rows or a.cap < a.take or a.trials < 1:
        ap.error("need --rows >= 256, 1 <= --take <= --rows, --cap >= --take, --trials >= 1")
    sample_cap = a.sample_cap or a.cap
    if sample_cap < 16:
        ap.error("--sample-cap must allow two groups of 8 keys")
    print(f"m = {a.rows}, take = {a.take}, cap = {a.cap}, sample cap = {sample_cap}, {a.trials} rows each")
    print("| margin | sampled | rank | short | overflow | mean candidates |")
    print("|---|---|---|---|---|---|")
    for margin in a.margin or [8]:
        r = simulate(a.rows, a.take, a.cap, sample_cap, margin, a.trials, a.seed)
        print(f"| {margin} | {r['ns']} | {r['rank']} | {100 * r['short']:.1f}% | "
              f"{100 * r['overflow']:.1f}% | {r['mean_kept']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
