#!/usr/bin/env python3
"""Where a top-k training-attention case spends its time, phase by phase, from Nsight Compute.

    ncu --metrics gpu__time_duration.sum --print-summary per-kernel --csv \\
        build/topk bench cuda --only fwdbwd_topk_r0.01_S8192 --reps 1 > kernels.csv
    python3 bench/phases.py kernels.csv

With --reps 1 the case runs its forward 4 times (2 alone, 2 with the backward) and its
backward twice, beside the dense baseline's flash kernels (left out here); --forwards and
--backwards change those counts. Times are Nsight Compute's, at its locked clocks, so the sums
run above the benchmark's wall times. Prints a Markdown table: ms per forward or backward.
"""
import argparse
import csv
import re
import sys

# (phase, part, pattern on the kernel name); the first match wins.
PHASES = [
    # cuBLAS picks GEMM kernels by shape, and a matrix-vector kernel for a last column of keys.
    ("forward", "score products (cuBLAS)", r"^(nvjet|cutlass|sm\d+_xmma|.*gemm|.*gemv)"),
    # Group-shared lists: the warp kernel's GRP instance (last template argument 1) selects once
    # per (row, KV head) and attends each head of the group.
    ("forward", "group select + each head's softmax + P V, warp per (row, KV head)",
     r"select_attend_warps_kernel<\d+, \d+, \d+, 1>"),
    ("forward", "select + softmax + P V, warp per (row, head)", r"select_attend_warps_kernel"),
    ("forward", "select + softmax + P V, cluster per (row, head)", r"select_attend"),
    # Group-shared lists: each head's row lse, then keys ranked by the group's summed
    # probabilities; then attention over the lists (split over keys, then combined).
    ("forward", "group ranking (row lse + summed probabilities)", r"^(row_lse_kernel|group_rank_kernel)"),
    ("forward", "attend over the lists (split + combine)", r"^(attend_kernel|combine_kernel)"),
    # The filtered path (the default for prefill and training where it applies): a 16th of the
    # keys scored (template argument SAMPLE = true), the thresholds from them, then every key
    # scored and the candidates kept.
    ("forward", "tile sample (filtered path)", r"tile_scores_kernel<\d+, \d+, (true|1|\(bool\)1)>"),
    ("forward", "thresholds from the sample (filtered path)", r"tile_thresholds_kernel"),
    ("forward", "tile filtering pass (filtered path)", r"tile_scores_kernel"),
    ("forward", "other forward kernels", r"(select|score|threshold|sample)"),
    ("backward", "Delta (bwd_prep_kernel, one call)", r"bwd_prep_kernel"),
    ("backward", "per-entry P and dS", r"sparse_entry_kernel"),
    ("backward", "dQ", r"sparse_dq_kernel"),
    ("backward", "invert the selection (used entries, keys, sort, runs, scan)",
     r"(sparse_used_kernel|sparse_row_used_kernel|sparse_keys_kernel|sparse_rows_kernel|sparse_runs_kernel"
     r"|radix_sort|DeviceRadixSort|scan::|DeviceScan)"),
    ("backward", "dK, dV", r"(sparse_pieces_kernel|sparse_dkdv_kernel)"),
]
SKIP = r"flash_(forward|dq|dkdv)(_wgmma)?_kernel"  # the dense baseline (mma.sync or warpgroup)
UNITS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0,
         "s": 1e3, "second": 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", help="ncu --print-summary per-kernel --csv output")
    ap.add_argument("--forwards", type=int, default=4)
    ap.add_argument("--backwards", type=int, default=2)
    args = ap.parse_args()
    rows = list(csv.reader(open(args.csv)))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        sys.exit(f"phases.py: {args.csv}: no 'Kernel Name' column (not an ncu per-kernel summary)")
    cols = rows[head]
    total = {}
    calls = {}
    unknown = {}
    for r in rows[head + 1:]:
        if len(r) < len(cols):
            continue
        d = dict(zip(cols, r))
        if d.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = re.sub(r"\(.*", "", d["Kernel Name"]).strip()
        n = int(d["Invocations"].replace(",", ""))
        ms = float(d["Average"].replace(",", "")) * UNITS[d["Metric Unit"]] * n
        if re.search(SKIP, name):
            continue
        short = name.split("::")[-1]
        key = next(((ph, part) for ph, part, pat in PHASES if re.search(pat, short) or re.search(pat, name)), None)
        if key is None:
            unknown[name] = unknown.get(name, 0.0) + ms
            continue
        total[key] = total.get(key, 0.0) + ms
        calls[key] = calls.get(key, 0) + n
    print("| phase | part | ms each |")
    print("|---|---|---:|")
    sums = {"forward": 0.0, "backward": 0.0}
    for ph, part, _ in PHASES:
        if (ph, part) not in total:
            continue
        t = total[(ph, part)]
        if part.startswith("Delta"):
            each = t / calls[(ph, part)]  # the dense backward calls it too
        else:
            each = t / (args.forwards if ph == "forward" else args.backwards)
        sums[ph] += each
        print(f"| {ph} | {part} | {each:.1f} |")
    print(f"| forward | total | {sums['forward']:.1f} |")
    print(f"| backward | total | {sums['backward']:.1f} |")
    for name, t in sorted(unknown.items(), key=lambda x: -x[1]):
        print(f"phases.py: kernel not in any phase: {name} ({t:.1f} ms in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
