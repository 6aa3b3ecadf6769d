#!/usr/bin/env bash
# The whole test suite: the style checks (rustfmt, clippy with warnings as errors), unit tests,
# the module-layer rule (tests/layers.rs), and end-to-end tests with real Chromium, GStreamer,
# LiveKit's Node SDK, Janus (in a network namespace: needs root) and publishers in Chromium.
# End-to-end tests run one at a time (they share two cores). Then each fuzz target for a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The room templates' TypeScript, type-checked (install-deps has built them).
npm run --silent --prefix web check
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo build --locked --all-targets
cargo test --locked -- --test-threads=1
# The fuzz targets, a bounded time each (FUZZ_SECS, default 60).
bash scripts/fuzz.sh
