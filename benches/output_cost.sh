#!/usr/bin/env bash
# What outputs cost on top of an egress (RTMP push to a local nginx, MP4, snapshots).
# Not a test: run it on an otherwise idle machine and copy the table into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
exec python3 benches/output_cost.py target/release/roomcast "$@"
