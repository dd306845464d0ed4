#!/usr/bin/env bash
# First checks that every example and bench binary answers `--help` with
# its usage and exit status 0, within seconds and without starting anything.
# Then runs echo_check against our own echo_server in every mode: plain,
# permessage-deflate with several parameter sets, per-frame deflate under
# both names, and 100 mux channels. Then serves wss:// (--tls-cert/--tls-key,
# a self-signed certificate from openssl) and checks it with Python
# websockets (echo with permessage-deflate, then SIGTERM: the client gets
# 1001 and the server exits 0). Exits non-zero on the first failure.
# Loopback only; every step is bounded by `timeout`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

# --help of every binary, from a debug build (what `cargo test --workspace`
# has compiled already).
timeout 900 cargo build --quiet -p weft-examples --examples -p weft-benches --bins \
    -p weft-cli --bin weft -p weft-broker --bin weft-broker
helped=0
for bin in examples/echo_server examples/echo_check examples/autobahn_client examples/mux_demo \
    examples/custom_extension examples/axum_broadcast examples/hyper_server \
    compression echo_rounds idle_memory mux_bench broadcast broker_bench soak slowloris handshake_flood \
    weft weft-broker; do
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

# --- wss:// with Python websockets -------------------------------------------
WEBSOCKETS_VERSION="17.4"   # as scripts/interop.sh
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
    timeout 120 python3 -m venv "$VENV"
fi
installed="$("$PY" -c 'import importlib.metadata as m; print(m.version("websockets"))' 2>/dev/null || true)"
if [[ "$installed" != "$WEBSOCKETS_VERSION" ]]; then
    timeout 300 "$PY" -m pip install --quiet --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION"
fi
TLS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/weft-echo-tls.XXXXXX")"
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$TLS_DIR"' EXIT
timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 2> "$TLS_DIR/openssl.log"
TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/echo_server" --addr "127.0.0.1:$TLS_PORT" --tls-cert "$TLS_DIR/cert.pem" \
    --tls-key "$TLS_DIR/key.pem" > "$TLS_DIR/server.log" 2>&1 &
TLS_SERVER=$!
trap 'kill $SERVER $TLS_SERVER 2>/dev/null || true; rm -rf "$TLS_DIR"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null && break
    sleep 0.1
done
if out=$(timeout 60 "$PY" - "$TLS_PORT" "$TLS_DIR/cert.pem" "$TLS_SERVER" <<'PY'
import asyncio, os, signal, ssl, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

port, cert, server_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    ctx = ssl.create_default_context(cafile=cert)
    async with connect(f"wss://127.0.0.1:{port}/", ssl=ctx, max_size=None) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in ext, ext
        msgs = ["hello over TLS", b"\x00\x01" * 50000, '{"k": "v"}' * 10000]
        for m in msgs:
            await ws.send(m)
            back = await asyncio.wait_for(ws.recv(), 30)
            assert back == m, (type(back), len(back))
        # Graceful shutdown: SIGTERM, and the server says 1001.
        os.kill(server_pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), 30)
            raise AssertionError("a message after SIGTERM")
        except ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1001, e
    print(f"{len(msgs)} echoes over wss:// ({ext}), then 1001 on SIGTERM")

asyncio.run(main())
PY
); then
    echo "python websockets over wss://: $out"
    passed=$((passed + 1))
else
    echo "python websockets over wss://: FAILED: $out"
    cat "$TLS_DIR/server.log"
    echo "echo checks: $passed passed, 1 failed"
    exit 1
fi
status=0
timeout 30 tail --pid="$TLS_SERVER" -f /dev/null || status=$?
wait "$TLS_SERVER" || status=$?
if ((status != 0)) || ! grep -q "(0 connections aborted)" "$TLS_DIR/server.log"; then
    echo "echo_server --tls-cert after SIGTERM: FAILED (exit $status): $(cat "$TLS_DIR/server.log")"
    exit 1
fi
echo "echo_server --tls-cert: exited 0 after SIGTERM: $(tail -1 "$TLS_DIR/server.log")"
echo "echo checks: $passed passed, 0 failed"
