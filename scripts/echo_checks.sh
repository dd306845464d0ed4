#!/usr/bin/env bash
# First checks that every example and bench binary answers `--help` with
# its usage and exit status 0, within seconds and without starting anything.
# Then runs echo_check against our own echo_server in every mode: plain,
# permessage-deflate with several parameter sets, per-frame deflate under
# both names, and 100 mux channels. Exits non-zero on the first failure.
# Loopback only; every step is bounded by `timeout`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

# --help of every binary, from a debug build (what `cargo test --workspace`
# has compiled already).
timeout 900 cargo build --quiet -p weft-examples --examples -p weft-benches --bins
helped=0
for bin in examples/echo_server examples/echo_check examples/autobahn_client examples/mux_demo \
    examples/custom_extension \
    compression echo_rounds idle_memory mux_bench; do
    status=0
    out=$(timeout 5 "$TARGET/debug/$bin" --help 2>&1) || status=$?
    if ((status != 0)) || [[ "$out" != *"Usage: ${bin#examples/}"* ]]; then
        echo "$bin --help: FAILED (exit $status${out:+; output: ${out:0:300}})"
        exit 1
    fi
    helped=$((helped + 1))
done
echo "--help: $helped binaries print their usage and exit 0"

timeout 900 cargo build --release --quiet --example echo_server --example echo_check
BIN="$TARGET/release/examples"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/echo_server" --addr "127.0.0.1:$PORT" > /dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

passed=0
check() {
    local out
    if out=$(timeout 120 "$BIN/echo_check" --url "ws://127.0.0.1:$PORT/" "$@"); then
        echo "echo_check $*: $out"
        passed=$((passed + 1))
    else
        echo "echo_check $*: FAILED: $out"
        echo "echo checks: $passed passed, 1 failed"
        exit 1
    fi
}

check --messages 40
check --messages 40 --extension permessage-deflate
check --messages 40 --extension permessage-deflate --param server_max_window_bits=9 --param client_max_window_bits=9
check --messages 40 --extension permessage-deflate --param server_no_context_takeover --param client_no_context_takeover
check --messages 40 --extension permessage-deflate --param server_max_window_bits=8 --deflate-memory hibernate
check --messages 40 --extension deflate-frame
check --messages 40 --extension x-webkit-deflate-frame --param no_context_takeover
check --messages 20 --mux-channels 100
echo "echo checks: $passed passed, 0 failed"
