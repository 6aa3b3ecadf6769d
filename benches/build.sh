# Sourced by the benchmark wrappers: installs what is needed and builds roomcast, setting BIN.
# PROFILE=dev uses the debug build (dependencies are optimised in it too; the hot paths are
# Chromium, libjpeg and x264, which are C either way).
bash scripts/install-deps.sh
case "${PROFILE:-release}" in
  release) cargo build --release --locked; BIN=target/release/roomcast ;;
  dev) cargo build --locked; BIN=target/debug/roomcast ;;
  *) echo "PROFILE must be release or dev" >&2; exit 2 ;;
esac
