#!/usr/bin/env bash
# Per-egress cost benchmark (CPU, PSS, fps, duplicated/dropped frames, start and glass-to-glass
# latency, per capture backend) against the real binary.
# Not a test: run it on an otherwise idle machine and copy the table into docs/benchmarks.md.
# PROFILE=dev uses the debug build (benches/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/build.sh
exec python3 benches/egress_cost.py "$BIN" "$@"
