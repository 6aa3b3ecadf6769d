#!/usr/bin/env bash
# Dispatch latency through livekit-server: the StartWebEgress / StartRoomCompositeEgress call on
# livekit-server (Node SDK) → ACTIVE as livekit-server's ListEgress reports it (polled every
# 100 ms), with roomcast as the egress worker over psrpc (tests/livekit_worker.rs, release
# build, cold start: no warm pool). Prints each run's figure and the medians.
#   bash benches/lk_dispatch.sh [RUNS]      (default 3)
# Not a test: run it on an otherwise idle machine (needs root for the network namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
runs="${1:-3}"
web=(); room=()
for _ in $(seq "$runs"); do
  out=$(cargo test --release --locked --test livekit_worker -- --nocapture --test-threads 1 \
    livekit_server_dispatches_web_egress_to_roomcast livekit_server_room_composite_and_webhooks 2>&1)
  web+=("$(grep -o 'dispatch through livekit-server: {"dispatchMs":[0-9]*' <<<"$out" | grep -o '[0-9]*$')")
  room+=("$(grep -o 'room composite through livekit-server: {"dispatchMs":[0-9]*' <<<"$out" | grep -o '[0-9]*$')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "web egress, call → ACTIVE through livekit-server (ms): ${web[*]}  median $(median "${web[@]}")"
echo "room composite (empty room), call → ACTIVE through livekit-server (ms): ${room[*]}  median $(median "${room[@]}")"
