#!/usr/bin/env bash
# Glass-to-glass latency benchmark: a clock page egressed by the real binary and played back by
# the real player page in a second Chromium on loopback; prints a Markdown table.
#   bash benches/glass_to_glass.sh [--seconds 30] [--runs 3] [--playlist live.m3u8]
# ROOMCAST_BIN=path/to/roomcast skips install-deps and the build and uses that binary.
# Not a test: run it on an otherwise idle machine (two Chromiums and x264 share the cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${ROOMCAST_BIN:-}" ]; then
  BIN=$ROOMCAST_BIN
else
  bash scripts/install-deps.sh
  cargo build --release --locked
  BIN=target/release/roomcast
fi
# exec: Ctrl-C and SIGTERM go straight to the Python script, which ends what it started.
exec python3 benches/glass_to_glass.py "$BIN" "$@"
