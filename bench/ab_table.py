#!/usr/bin/env python3
"""Builds side by side: `topk bench cuda --out` JSON files of several builds (or settings) of one
run, joined into one Markdown table, each case's time beside the first build's with the ratio.

  python3 bench/ab_table.py main=a1.json main=a2.json new=b1.json new=b2.json

LABEL=FILE arguments; files with the same label are rounds of that build, and each case keeps
its fastest round (rounds interleave the builds, so a slow moment of the machine touches one
round of each, not one build). Decode and select cases are in us; prefill cases and training
cases (forward, and forward + backward) in ms. A ratio above 1 means the build is slower than
the first. Every file must come from the same GPU: the device names are checked.
"""
import json
import sys

# (section of the JSON, metric, how it is shown, unit divisor)
METRICS = [
    ("cases", "time_us", "{name}", 1.0),
    ("prefill", "time_us", "{name} (ms)", 1e3),
    ("train", "fwd_us", "{name} forward (ms)", 1e3),
    ("train", "time_us", "{name} forward + backward (ms)", 1e3),
]


def load(args):
    builds, device = {}, None
    for arg in args:
        label, sep, path = arg.partition("=")
        if not sep or not label or not path:
            sys.exit(f"ab_table.py: '{arg}' is not LABEL=FILE")
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"ab_table.py: {path}: {e}")
        if d.get("tool") != "topk bench cuda":
            sys.exit(f"ab_table.py: {path}: not `topk bench cuda` output")
        if device is None:
            device = d.get("device")
        elif d.get("device") != device:
            sys.exit(f"ab_table.py: {path}: device {d.get('device')!r}, the others {device!r}")
        best = builds.setdefault(label, {})
        for section, metric, shown, div in METRICS:
            for c in d.get(section, []):
                if metric not in c:
                    continue
                key = shown.format(name=c["name"])
                v = c[metric] / div
                best[key] = min(best.get(key, v), v)
    return builds, device


def main(argv):
    if not argv:
        sys.exit("usage: bench/ab_table.py LABEL=FILE [LABEL=FILE ...]")
    builds, device = load(argv)
    labels = list(builds)
    rows = []  # the first build's cases in its order, then any the others add
    for label in labels:
        rows += [k for k in builds[label] if k not in rows]
    print(f"Device: {device}; each case's fastest round\n")
    head = "| case | " + " | ".join(labels)
    if len(labels) > 1:
        head += " | " + " | ".join(f"{l} / {labels[0]}" for l in labels[1:])
    print(head + " |")
    print("|---|" + "---:|" * (len(labels) + max(0, len(labels) - 1)))
    for key in rows:
        vals = [builds[l].get(key) for l in labels]
        cells = [f"{v:.1f}" if v is not None else "" for v in vals]
        base = vals[0]
        ratios = [f"{v / base:.3f}" if v is not None and base else "" for v in vals[1:]]
        print(f"| {key} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
