#!/usr/bin/env bash
# Installs everything roomcast and its tests need on Debian 12, from Debian's packages, the
# npm registry and the Go module proxy (no downloaded browsers or binaries). Safe to run again:
# what is there already is kept (the Go build of livekit-server only happens once).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PKGS=(
  # browser and media
  chromium chromium-headless-shell xvfb
  # the x11 backend's default X server: Xorg with the dummy driver (a screen at the output rate)
  xserver-xorg-core xserver-xorg-video-dummy
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  ffmpeg
  # audio: a private sound server per egress, and GStreamer's source for it
  pulseaudio pulseaudio-utils gstreamer1.0-pulseaudio
  # the room composite tests' SFU (in a network namespace of their own)
  janus iproute2
  # the network-policy tests' DNS server (in a network namespace of its own)
  dnsmasq-base
  # LiveKit's worker bus (psrpc) and livekit-server's multi-node state
  redis-server
  # the virtualenv of the tests' Python SDK client
  python3-venv
  # the stream output tests' RTMP server
  nginx libnginx-mod-rtmp
  # build
  build-essential pkg-config libssl-dev curl ca-certificates git
)
# Node and npm run the tests' real clients; keep an existing Node (it may bundle npm).
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "roomcast: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "roomcast: cargo not found. Install Rust (rustup, or Debian's cargo if it is new enough: rust-version in Cargo.toml)" >&2
  exit 1
fi

# The style checks of the test command (rustup's machines ship both components).
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    component=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
    command -v rustup >/dev/null 2>&1 && rustup component add "$component" || {
      echo "roomcast: cargo $tool is missing: install the $component component (rustup component add $component)" >&2
      exit 1
    }
  fi
done

# livekit-server for the LiveKit tests, built from its Go module at a pinned release into
# .deps/ (project-local; Go's module and build caches make a rebuild after `rm -rf .deps`
# quick). The first build takes about 2 minutes on 2 cores (docs/testing.md).
LIVEKIT_SERVER_VERSION=v1.13.5
LK_DIR=".deps/livekit-server-$LIVEKIT_SERVER_VERSION"
if [ ! -x "$LK_DIR/livekit-server" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "roomcast: go not found: the LiveKit tests need livekit-server built from its Go module (Go >= 1.26)" >&2
    exit 1
  fi
  echo "roomcast: building livekit-server $LIVEKIT_SERVER_VERSION from the Go module proxy (once)" >&2
  mkdir -p "$LK_DIR"
  GOBIN="$PWD/$LK_DIR" GOFLAGS=-buildvcs=false go install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_SERVER_VERSION"
  mv "$LK_DIR/server" "$LK_DIR/livekit-server"
fi
mkdir -p .deps/bin
ln -sfn "../livekit-server-$LIVEKIT_SERVER_VERSION/livekit-server" .deps/bin/livekit-server

# Node clients used by the tests (LiveKit's server SDK, playwright-core driving Debian's
# Chromium as a player), pinned by the lock file.
if [ ! -d tests/node/node_modules/livekit-server-sdk ] || [ ! -d tests/node/node_modules/playwright-core ]; then
  npm ci --prefix tests/node --no-audit --no-fund
fi

# LiveKit's Python server SDK (livekit-api and what it needs, pinned), in a project-local
# virtualenv, for the tests that drive the Egress API as a Python application does.
if [ ! -x .deps/py/bin/python ] || ! cmp -s tests/python/requirements.txt .deps/py/requirements.txt; then
  python3 -m venv .deps/py
  .deps/py/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt .deps/py/requirements.txt
fi

# cargo-fuzz (from crates.io, pinned) for scripts/fuzz.sh, which the test suite runs.
CARGO_FUZZ_VERSION=0.13.2
if ! .deps/cargo/bin/cargo-fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install --quiet --locked --root .deps/cargo cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# The room templates (TypeScript, livekit-client and janus.js from npm) are built into
# templates/room and templates/publisher, which roomcast serves to its Chromium.
if [ ! -d web/node_modules/esbuild ]; then
  npm ci --prefix web --no-audit --no-fund
fi
npm run --silent --prefix web build

# A customer's template (@livekit/egress-sdk + livekit-client, as LiveKit's docs write one),
# bundled into tests/pages/customer/ for the room tests.
if [ ! -d tests/customer/node_modules/@livekit/egress-sdk ] || [ ! -d tests/customer/node_modules/esbuild ]; then
  npm ci --prefix tests/customer --no-audit --no-fund
fi
npm run --silent --prefix tests/customer build
