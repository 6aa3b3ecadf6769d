#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/fuzz_targets/) for FUZZ_SECS seconds (default 60): Twirp
# request decoding into job specs, LL-HLS query parsing, output names and origin paths. A crash
# leaves its input in fuzz/artifacts/<target>/ and fails the run. cargo-fuzz is built from
# crates.io into .deps/cargo by scripts/install-deps.sh; it needs a nightly toolchain, or
# stable with RUSTC_BOOTSTRAP=1 when no nightly is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.deps/cargo/bin:$PATH"
SECS="${FUZZ_SECS:-60}"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN=(+nightly)
else
  TOOLCHAIN=()
  export RUSTC_BOOTSTRAP=1
fi
for target in twirp_requests llhls_query output_names; do
  echo "fuzz: $target for ${SECS}s"
  # No sanitizer: the targets are safe Rust; what is looked for is a panic (or an abort).
  cargo "${TOOLCHAIN[@]}" fuzz run --fuzz-dir fuzz --sanitizer none "$target" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 2>&1 | tail -n 12
done
