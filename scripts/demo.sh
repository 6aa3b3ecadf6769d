#!/usr/bin/env bash
# Set-up and demo: installs what is needed, builds roomcast, starts `roomcast serve`, starts a
# web egress of the bundled animated page through the Egress API and prints a player URL.
# Ctrl-C stops the egress (the playlist is closed) and the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked

BIND="${ROOMCAST_BIND:-127.0.0.1:7890}"
BIN=target/release/roomcast
"$BIN" serve --bind "$BIND" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM
for _ in $(seq 50); do curl -sf "http://$BIND/healthz" >/dev/null && break; sleep 0.2; done

TOKEN=$("$BIN" token)
RESP=$(curl -sf -X POST "http://$BIND/twirp/livekit.Egress/StartWebEgress" \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d "{\"url\": \"http://$BIND/templates/demo/animated.html\", \"segment_outputs\": [{\"live_playlist_name\": \"live.m3u8\"}]}")
ID=$(printf '%s' "$RESP" | sed -n 's/.*"egressId":"\([^"]*\)".*/\1/p')
echo
echo "  egress:   $ID"
echo "  player:   http://$BIND/play/$ID/live.m3u8"
echo "  playlist: http://$BIND/hls/$ID/live.m3u8"
echo "  room template preview (no SFU, the demo adapter):"
echo "            http://$BIND/templates/room/index.html?sfu=demo&participants=9&layout=speaker"
echo "  Ctrl-C to stop."
echo
wait $SERVER
