#!/usr/bin/env bash
# Black-box echo throughput of examples/echo_server as shipped: the server
# is its own process pinned to one CPU with taskset (like every peer, each
# running the bench's echo server for its crate alone on a current-thread
# runtime: `echo_rounds --serve`), and the load client is a separate
# process (`echo_rounds --external`) on another CPU. Cells c1 and c64,
# 16 B to 1 MiB; the table gives echo_server's ratio to the best peer.
#
#   scripts/echo_blackbox.sh                      # all cells, 5 rounds (ROUNDS=N for more)
#   ROUNDS=7 scripts/echo_blackbox.sh --cells c64/1MiB
#   SERVER_ARGS="--no-mux" scripts/echo_blackbox.sh   # flags for echo_server
#   SERVER_CPU=1 CLIENT_CPU=0 (defaults) choose the CPUs.
#
# Extra arguments go to the client (echo_rounds). Loopback only; every
# process is killed on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
read -r -a server_args <<< "${SERVER_ARGS:-}"

timeout 1200 cargo build --release --quiet --example echo_server -p weft-examples
timeout 1200 cargo build --release --quiet -p weft-benches --bin echo_rounds
ECHO_SERVER="$TARGET/release/examples/echo_server"
ROUNDS_BIN="$TARGET/release/echo_rounds"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

external=()
p=$(port)
taskset -c "$SERVER_CPU" "$ECHO_SERVER" --addr "127.0.0.1:$p" "${server_args[@]}" > /dev/null &
pids+=($!)
wait_port "$p"
external+=("echo_server=127.0.0.1:$p")
for peer in tokio-tungstenite fastwebsockets tokio-websockets raw-tcp-echo; do
    p=$(port)
    taskset -c "$SERVER_CPU" "$ROUNDS_BIN" --serve "$peer" --addr "127.0.0.1:$p" > /dev/null &
    pids+=($!)
    wait_port "$p"
    external+=("$peer=127.0.0.1:$p")
done
echo "servers on CPU $SERVER_CPU, client on CPU $CLIENT_CPU; echo_server ${server_args[*]:-(defaults)}"
taskset -c "$CLIENT_CPU" "$ROUNDS_BIN" --rounds "${ROUNDS:-5}" "$@" \
    --external "$(IFS=,; echo "${external[*]}")"
