#!/usr/bin/env bash
# Room composite cost benchmark: a real Janus or LiveKit room (--sfu; network namespace; needs root) with N
# publishers, one room-composite egress of it; the egress's CPU, PSS, fps and start times.
# Not a test: run it on an otherwise idle machine and copy the table into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
exec python3 benches/room_cost.py target/release/roomcast "$@"
