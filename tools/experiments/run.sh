#!/usr/bin/env bash
# One command per study of docs/results.md: tools/experiments/run.sh STUDY [--scale cpu|gpu] ...
# (run.py --help lists the studies and options).
exec python3 "$(dirname "$0")/run.py" "$@"
