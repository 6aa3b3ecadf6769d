#!/usr/bin/env bash
# Soak benchmark (issue 17.10): 200 start/stop cycles and 30 min of 2 egresses; what serve accumulates.
# Not a test: run it on an otherwise idle machine and copy the table into docs/benchmarks.md.
# PROFILE=dev uses the debug build (benches/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/build.sh
exec python3 benches/soak.py "$BIN" "$@"
