#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests with real Chromium, GStreamer and
# LiveKit's Node SDK,
# Janus (in a network namespace: needs root) and publishers in Chromium. End-to-end tests run one at a time (they share two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The room templates' TypeScript, type-checked (install-deps has built them).
npm run --silent --prefix web check
cargo build --locked --all-targets
exec cargo test --locked -- --test-threads=1
