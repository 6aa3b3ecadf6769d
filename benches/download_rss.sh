#!/usr/bin/env bash
# serve's peak memory while 50 clients download a long recording in parallel (issue 17, item 2).
# Not a test: run it on an otherwise idle machine and copy the figures into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked
exec python3 benches/download_rss.py target/release/roomcast "$@"
