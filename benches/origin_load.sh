#!/usr/bin/env bash
# Origin load benchmark: N concurrent LL-HLS clients (blocking reload + part fetch) against the
# real `roomcast serve` on loopback; prints a Markdown table.
#   bash benches/origin_load.sh [--clients 100,1000,10000] [--seconds 15] [--ramp 5]
# Not a test: run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec cargo bench --locked --bench origin_load -- "$@"
