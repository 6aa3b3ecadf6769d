#!/usr/bin/env bash
# Per-egress cost benchmark (CPU, PSS, fps, duplicated/dropped frames, start and glass-to-glass
# latency, per capture backend) against the real binary.
# Not a test: run it on an otherwise idle machine and copy the table into docs/benchmarks.md.
# PROFILE=dev uses the debug build (dependencies are optimised in it too; the hot paths are
# Chromium, libjpeg and x264, which are C either way).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
case "${PROFILE:-release}" in
  release) cargo build --release --locked; BIN=target/release/roomcast ;;
  dev) cargo build --locked; BIN=target/debug/roomcast ;;
  *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac
exec python3 benches/egress_cost.py "$BIN" "$@"
