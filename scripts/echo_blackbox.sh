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
# Compressing peers (--deflate, first argument): permessage-deflate
# negotiated, each server with its own defaults: echo_server, Python
# websockets (scripts/interop/py_server.py, in .venv), Node ws
# (scripts/interop/node_server.js) and yawc (`echo_rounds --serve yawc`), a
# JSON text message compressed once per connection by the client (see
# weft_benches::client); cells c1/64KiB and c64/64KiB unless --cells is
# given. Also measured, as variants of echo_server rather than peers: weft
# with Python websockets' windows (server_max_window_bits=12,
# client_max_window_bits=12) and with the Keep memory strategy.
#
#   scripts/echo_blackbox.sh --deflate            # installs websockets / ws when missing
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
deflate=0
if [[ "${1:-}" == "--deflate" ]]; then
    deflate=1
    shift
fi

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

start() { # NAME CMD...: start CMD pinned on SERVER_CPU, wait for its port $p
    local name=$1
    shift
    taskset -c "$SERVER_CPU" "$@" > /dev/null 2>&1 &
    pids+=($!)
    wait_port "$p"
    external+=("$name=127.0.0.1:$p")
}

external=()
if [[ $deflate == 1 ]]; then
    VENV="$ROOT/.venv"
    HELPERS="$ROOT/scripts/interop"
    if ! "$VENV/bin/python" -c 'import websockets' 2> /dev/null; then
        timeout 120 python3 -m venv "$VENV"
        # The version scripts/interop.sh pins.
        timeout 300 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "$(sed -n 's/^WEBSOCKETS_VERSION="\([^"]*\)".*/websockets==\1/p' scripts/interop.sh)"
    fi
    if [[ ! -d "$HELPERS/node_modules/ws" ]]; then
        LOGS="$(mktemp -d)"
        log() { echo "echo_blackbox: $*" >&2; }
        die() { log "$*"; exit 1; }
        AS_ROOT=()
        [[ $(id -u) == 0 ]] || AS_ROOT=(sudo)
        # shellcheck source=lib/browser_deps.sh
        source "$ROOT/scripts/lib/browser_deps.sh"
        ensure_node_ws
    fi
    p=$(port); start echo_server "$ECHO_SERVER" --addr "127.0.0.1:$p" "${server_args[@]}"
    p=$(port); start echo_server-w12 "$ECHO_SERVER" --addr "127.0.0.1:$p" \
        --param server_max_window_bits=12 --param client_max_window_bits=12
    p=$(port); start echo_server-keep "$ECHO_SERVER" --addr "127.0.0.1:$p" --deflate-memory keep
    p=$(port); start python-websockets "$VENV/bin/python" "$HELPERS/py_server.py" --port "$p"
    p=$(port); start node-ws node "$HELPERS/node_server.js" --port "$p"
    p=$(port); start yawc "$ROUNDS_BIN" --serve yawc --addr "127.0.0.1:$p"
    cells=(--cells c1/64KiB,c64/64KiB)
    for a in "$@"; do [[ "$a" == --cells* ]] && cells=(); done
    echo "servers on CPU $SERVER_CPU, client on CPU $CLIENT_CPU; permessage-deflate, each server's defaults"
    taskset -c "$CLIENT_CPU" "$ROUNDS_BIN" --deflate --rounds "${ROUNDS:-5}" "${cells[@]}" "$@" \
        --external "$(IFS=,; echo "${external[*]}")"
    exit
fi
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
