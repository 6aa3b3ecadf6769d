#!/usr/bin/env bash
# A/V sync benchmark: the A/V sync test (tests/av_sync.rs: a page that flashes white and beeps
# at 1 kHz once a second; every flash/beep pair decoded from the recording) run for 5 minutes
# on a release build, with the same bounds (EBU R37: audio at most 40 ms early, 60 ms late; no
# drift). Prints one summary line: pairs, median/min/max offset, drift.
#   bash benches/av_sync.sh [SECONDS]      (default 300)
# Not a test: run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
AV_SYNC_SECONDS="${1:-300}" exec cargo test --release --locked --test av_sync -- --nocapture --exact flash_and_beep_stay_in_sync
