#!/usr/bin/env bash
# Soak benchmark (issue 17.10): 200 start/stop cycles and 30 min of 2 egresses; what serve accumulates.
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
exec python3 benches/soak.py "$BIN" "$@"
