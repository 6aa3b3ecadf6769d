#!/usr/bin/env bash
# Per-egress cost benchmark (CPU, PSS, fps, start latency) against the real binary.
# Not a test: run it on an otherwise idle machine and copy the table into the README.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
exec python3 benches/egress_cost.py target/release/roomcast "$@"
