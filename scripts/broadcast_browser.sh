#!/usr/bin/env bash
# Browser check of the axum_broadcast example: two headless Chromium pages
# join the chat, each sends a message, and both must show both messages
# over permessage-deflate; then SIGTERM to the server must close both pages
# with 1001 (graceful shutdown) and the server must exit.
#
# Reuses scripts/interop.sh's setup: ws (npm) in scripts/interop/node_modules
# for the DevTools driver (scripts/interop/broadcast_check.js), Debian's
# chromium; both installed when missing. Every wait is bounded; background
# processes are stopped on exit. Loopback only. Logs: reports/broadcast_browser/.
#
# Prints `broadcast_browser: ok` or `broadcast_browser: FAIL (...)`; exits 1
# on failure.
#
# Environment:
#   BROADCAST_BIN      the axum_broadcast binary to test [built here with
#                      cargo build --release --example axum_broadcast]
#   BROADCAST_TIMEOUT  seconds for each phase [60]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HELPERS="$ROOT/scripts/interop"
LOGS="$ROOT/reports/broadcast_browser"
T="${BROADCAST_TIMEOUT:-60}"
STARTUP_TIMEOUT=20
STOP_TIMEOUT=5

log() { printf '[broadcast_browser %4ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { echo "broadcast_browser: FAIL ($*)"; exit 1; }

die() { fail "$*"; }
# shellcheck source=lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"
# shellcheck source=lib/browser_deps.sh
source "$ROOT/scripts/lib/browser_deps.sh"

rm -rf "$LOGS"
mkdir -p "$LOGS"
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/weft-broadcast.XXXXXX")"

# --- setup (scripts/lib/browser_deps.sh) ------------------------------------------
ensure_node_ws
ensure_chromium
BIN="${BROADCAST_BIN-}"
if [[ -z "$BIN" ]]; then
    log "building the axum_broadcast example (release)"
    timeout 1200 cargo build --release --quiet --example axum_broadcast
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/axum_broadcast"
fi
[[ -x "$BIN" ]] || fail "$BIN is missing"

# --- the server -------------------------------------------------------------------
SERVER_LOG="$LOGS/axum_broadcast.log"
spawn "$SERVER_LOG" "$BIN" --addr 127.0.0.1:0 --stats-every 1
SERVER_PID=$SPAWNED
PORT=""
deadline=$((SECONDS + STARTUP_TIMEOUT))
while ((SECONDS < deadline)); do
    line="$(grep -m1 -o 'listening on http://127\.0\.0\.1:[0-9]*' "$SERVER_LOG" 2>/dev/null || true)"
    if [[ -n "$line" ]]; then
        PORT="${line##*:}"
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || fail "axum_broadcast exited: $(tail -n 5 "$SERVER_LOG")"
    sleep 0.1
done
[[ -n "$PORT" ]] || fail "axum_broadcast did not listen within ${STARTUP_TIMEOUT}s"
URL="http://127.0.0.1:$PORT/"

# --- two browsers, one page each ----------------------------------------------------
DIRS=()
for name in a b; do
    dir="$TMP_DIR/chromium-$name"
    mkdir -p "$dir"
    spawn "$LOGS/chromium-$name.log" "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --disable-dev-shm-usage --user-data-dir="$dir" \
        --remote-debugging-address=127.0.0.1 --remote-debugging-port=0 "$URL"
    DIRS+=(--user-data-dir "$dir")
done

check() {
    local phase=$1 out="$LOGS/check-$1.out" status=0
    timeout -k 5 "$((T + 5))" node "$HELPERS/broadcast_check.js" --phase "$phase" --url "$URL" \
        "${DIRS[@]}" --timeout-ms "$((T * 1000))" > "$out" 2> "$LOGS/check-$phase.log" || status=$?
    log "$phase: $(cat "$out")"
    ((status == 0)) || fail "$phase: $(cat "$out")"
}

check messages
# Graceful shutdown: SIGTERM closes every subscriber with 1001.
kill -TERM "$SERVER_PID"
check closed
for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && fail "axum_broadcast still running ${STOP_TIMEOUT}s after SIGTERM"
grep -q 'compression saved' "$SERVER_LOG" || fail "no statistics line in $SERVER_LOG"
grep -q 'closing 2 subscribers with 1001' "$SERVER_LOG" || fail "no shutdown line in $SERVER_LOG"
echo "broadcast_browser: ok"
