#!/usr/bin/env bash
# permessage-deflate (RFC 7692) interop checks: weft against real peers.
#
#   python-websockets  (PyPI websockets, in .venv)          as client and server
#   node-ws            (npm ws, in scripts/interop/node_modules) as client and server
#   chromium           (Debian chromium, headless)          as client
#
# client role: the peer connects to our echo_server (started per check with
#   the weft parameters), sends text (with multi-byte UTF-8) and binary
#   messages from 0 B to 1 MiB, compressible and random, some fragmented, and
#   a burst of pipelined small ones, and checks every echo. For chromium,
#   echo_server's page runs that self-test (http://127.0.0.1:PORT/?selftest)
#   and scripts/interop/browser_check.js reads the outcome over DevTools.
# server role: our echo_check connects to the peer's echo server (started per
#   check with the peer parameters) and checks every echo.
# Each check also requires permessage-deflate to be negotiated with the
# parameters listed as expected (RFC 7692 answers to the offer and policy).
# The peers inflate with the agreed window and reset per message when context
# takeover is off, and the client-role messages repeat random data 3000 bytes
# apart, so a weft compressor that overruns a small window, or refers back to
# an earlier message when it must not, fails the check.
#
# Prints `interop: <peer> <role> peer=<params> weft=<params>: ok|FAIL` per
# check (<role> is the peer's; "default" = no parameters given) and
# `interop: N passed, M failed` at the end; exits 1 if any check
# failed. Logs of every process: reports/interop/.
#
# Installs what it needs when missing: websockets into .venv, ws into
# scripts/interop/node_modules (npm ci), Debian's chromium (apt-get). Every
# wait is bounded; background processes are stopped on exit. Loopback only.
#
# Environment (defaults in brackets):
#   INTEROP_ONLY          run only the checks whose line matches this
#                         extended regex (bash =~) [all]
#   INTEROP_CHECK_TIMEOUT seconds for one check [60]
#   INTEROP_TIME_BUDGET   seconds for all checks, after setup [600]
#   INTEROP_SKIP_NETTY    set to skip the Netty per-frame deflate checks
#                         (scripts/interop/netty.sh, run at the end)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WEBSOCKETS_VERSION="17.4"   # PyPI websockets
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
HELPERS="$ROOT/scripts/interop"
LOGS="$ROOT/reports/interop"
EXAMPLES_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
ECHO_SERVER="$EXAMPLES_DIR/echo_server"
ECHO_CHECK="$EXAMPLES_DIR/echo_check"
ECHO_CHECK_MESSAGES=32      # echo_check cycles 8 sizes (0 B..1 MiB)

ONLY="${INTEROP_ONLY-}"
CHECK_TIMEOUT="${INTEROP_CHECK_TIMEOUT:-60}"
TIME_BUDGET="${INTEROP_TIME_BUDGET:-600}"
STARTUP_TIMEOUT=20          # a server printing its listening line
STOP_TIMEOUT=5              # a process group exiting after SIGTERM

# --- helpers ------------------------------------------------------------------

log() { printf '[interop %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Background processes, stop/cleanup/spawn and AS_ROOT: scripts/lib/procs.sh;
# node, ws and chromium: scripts/lib/browser_deps.sh.
# shellcheck source=lib/procs.sh
source "$ROOT/scripts/lib/procs.sh"
# shellcheck source=lib/browser_deps.sh
source "$ROOT/scripts/lib/browser_deps.sh"

# start_server LOGFILE CMD...: spawn a server that binds port 0 and prints
# "... listening on ws://127.0.0.1:PORT"; sets SERVER_PID and SERVER_PORT.
# Fails if it exits or prints nothing like that within STARTUP_TIMEOUT.
SERVER_PID=""
SERVER_PORT=""
start_server() {
    local logfile=$1 deadline=$((SECONDS + STARTUP_TIMEOUT)) line
    shift
    spawn "$logfile" "$@"
    SERVER_PID=$SPAWNED
    SERVER_PORT=""
    while ((SECONDS < deadline)); do
        line="$(grep -m1 -o 'listening on ws://127\.0\.0\.1:[0-9]*' "$logfile" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            SERVER_PORT="${line##*:}"
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited before listening" >> "$logfile"; return 1; }
        sleep 0.1
    done
    echo "server did not listen within ${STARTUP_TIMEOUT}s" >> "$logfile"
    return 1
}

# weft_args WORD...: our side's parameters as echo_server/echo_check options:
# NAME[=VALUE] -> --param NAME[=VALUE]; memory=M -> --deflate-memory M.
WEFT_ARGS=()
weft_args() {
    WEFT_ARGS=()
    local w
    for w in "$@"; do
        case "$w" in
            memory=*) WEFT_ARGS+=(--deflate-memory "${w#memory=}") ;;
            *) WEFT_ARGS+=(--param "$w") ;;
        esac
    done
}

# peer_args WORD...: NAME[=VALUE] -> --param NAME[=VALUE] (helper programs).
PEER_ARGS=()
peer_args() {
    PEER_ARGS=()
    local w
    for w in "$@"; do PEER_ARGS+=(--param "$w"); done
}

# verdict RESULTFILE EXPECTED...: the client's JSON line must say ok, with
# permessage-deflate negotiated and carrying every EXPECTED parameter
# (NAME or NAME=VALUE). Prints the negotiated header, or what is wrong.
verdict() {
    "$PY" - "$@" <<'EOF'
import json, sys
path, expected = sys.argv[1], sys.argv[2:]
lines = [l for l in open(path, encoding="utf-8", errors="replace") if l.lstrip().startswith("{")]
if not lines:
    sys.exit("no result line")
try:
    r = json.loads(lines[-1])
except ValueError:
    sys.exit(f"unreadable result line: {lines[-1].strip()}")
if not r.get("ok"):
    sys.exit(f"failed: {r.get('error', '?')}")
negotiated = r.get("negotiated", "")
for ext in negotiated.split(","):
    name, *params = [p.strip() for p in ext.split(";")]
    if name == "permessage-deflate":
        break
else:
    sys.exit(f"permessage-deflate not negotiated (extensions: {negotiated!r})")
missing = [e for e in expected if e not in params]
if missing:
    sys.exit(f"negotiated {negotiated!r}, lacking {' '.join(missing)}")
print(f"{negotiated} ({r.get('messages')} messages)")
EOF
}

# Time budget for the checks: T = seconds the next check may take.
T=0
CHECKS_START=0
budget() {
    local left=$((CHECKS_START + TIME_BUDGET - SECONDS))
    ((left > 0)) || return 1
    T=$((CHECK_TIMEOUT < left ? CHECK_TIMEOUT : left))
}

PASSED=0
FAILED=0
CASE_NO=0

# record LABEL STATUS DETAIL LOGFILE...: print the check's line; on failure
# also the tails of its logs.
record() {
    local label=$1 status=$2 detail=$3 f
    shift 3
    if [[ "$status" == 0 ]]; then
        PASSED=$((PASSED + 1))
        echo "interop: $label: ok"
        echo "    $detail"
    else
        FAILED=$((FAILED + 1))
        echo "interop: $label: FAIL"
        echo "    $detail"
        for f in "$@"; do
            [[ -s "$f" ]] || continue
            echo "    --- ${f#"$ROOT"/} (last lines)"
            grep -v -e 'ERROR:dbus/' "$f" | tail -n 15 | sed 's/^/    | /'
        done
    fi
}

# label PEER ROLE PEER_WORDS WEFT_WORDS
label() {
    local p=${3:-default} w=${4:-default}
    echo "$1 $2 peer=${p// /,} weft=${w// /,}"
}

selected() { [[ -z "$ONLY" || "$1" =~ $ONLY ]]; }

# client_case PEER "PEER_WORDS" "WEFT_WORDS" "EXPECTED": the peer's client
# against our echo_server.
client_case() {
    local peer=$1 peer_words=$2 weft_words=$3 expected=$4 name status=0 detail
    name="$(label "$peer" client "$peer_words" "$weft_words")"
    selected "$name" || return 0
    CASE_NO=$((CASE_NO + 1))
    local base
    base="$LOGS/$(printf '%02d' "$CASE_NO")"
    local server_log="$base-echo_server.log" client_out="$base-$peer-client.out" client_log="$base-$peer-client.log"
    # shellcheck disable=SC2086 # word lists
    { weft_args $weft_words; peer_args $peer_words; }
    local client=()
    case "$peer" in
        python-websockets) client=("$PY" "$HELPERS/py_client.py") ;;
        node-ws) client=(node "$HELPERS/node_client.js") ;;
        *) die "unknown peer $peer" ;;
    esac
    if ! budget; then
        record "$name" 1 "not run: time budget of ${TIME_BUDGET}s exhausted"
        return 0
    fi
    if start_server "$server_log" "$ECHO_SERVER" --addr 127.0.0.1:0 ${WEFT_ARGS[@]+"${WEFT_ARGS[@]}"}; then
        timeout -k 5 "$T" "${client[@]}" --url "ws://127.0.0.1:$SERVER_PORT/" \
            ${PEER_ARGS[@]+"${PEER_ARGS[@]}"} > "$client_out" 2> "$client_log" || status=$?
        # shellcheck disable=SC2086
        detail="$(verdict "$client_out" $expected 2>&1)" || ((status != 0)) || status=1
        ((status != 124)) || detail="timed out after ${T}s; $detail"
    else
        status=1
        detail="echo_server did not start"
    fi
    stop "$SERVER_PID"
    record "$name" "$status" "$detail" "$client_out" "$client_log" "$server_log"
}

# server_case PEER "PEER_WORDS" "WEFT_WORDS" "EXPECTED": our echo_check
# against the peer's echo server.
server_case() {
    local peer=$1 peer_words=$2 weft_words=$3 expected=$4 name status=0 detail
    name="$(label "$peer" server "$peer_words" "$weft_words")"
    selected "$name" || return 0
    CASE_NO=$((CASE_NO + 1))
    local base
    base="$LOGS/$(printf '%02d' "$CASE_NO")"
    local server_log="$base-$peer-server.log" check_out="$base-echo_check.out" check_log="$base-echo_check.log"
    # shellcheck disable=SC2086 # word lists
    { weft_args $weft_words; peer_args $peer_words; }
    local server=()
    case "$peer" in
        python-websockets) server=("$PY" "$HELPERS/py_server.py") ;;
        node-ws) server=(node "$HELPERS/node_server.js") ;;
        *) die "unknown peer $peer" ;;
    esac
    if ! budget; then
        record "$name" 1 "not run: time budget of ${TIME_BUDGET}s exhausted"
        return 0
    fi
    if start_server "$server_log" "${server[@]}" --port 0 ${PEER_ARGS[@]+"${PEER_ARGS[@]}"}; then
        timeout -k 5 "$T" "$ECHO_CHECK" --url "ws://127.0.0.1:$SERVER_PORT/" \
            --messages "$ECHO_CHECK_MESSAGES" --extension permessage-deflate \
            ${WEFT_ARGS[@]+"${WEFT_ARGS[@]}"} > "$check_out" 2> "$check_log" || status=$?
        # shellcheck disable=SC2086
        detail="$(verdict "$check_out" $expected 2>&1)" || ((status != 0)) || status=1
        ((status != 124)) || detail="timed out after ${T}s; $detail"
    else
        status=1
        detail="$peer server did not start"
    fi
    stop "$SERVER_PID"
    record "$name" "$status" "$detail" "$check_out" "$check_log" "$server_log"
}

# browser_case "WEFT_WORDS" "EXPECTED": headless Chromium runs echo_page.html's
# ?selftest against our echo_server.
browser_case() {
    local weft_words=$1 expected=$2 name status=0 detail
    name="$(label chromium client "" "$weft_words")"
    selected "$name" || return 0
    CASE_NO=$((CASE_NO + 1))
    local base
    base="$LOGS/$(printf '%02d' "$CASE_NO")"
    local server_log="$base-echo_server.log" browser_log="$base-chromium.log"
    local check_out="$base-browser_check.out" check_log="$base-browser_check.log"
    # shellcheck disable=SC2086 # word list
    weft_args $weft_words
    if ! budget; then
        record "$name" 1 "not run: time budget of ${TIME_BUDGET}s exhausted"
        return 0
    fi
    if start_server "$server_log" "$ECHO_SERVER" --addr 127.0.0.1:0 ${WEFT_ARGS[@]+"${WEFT_ARGS[@]}"}; then
        local url="http://127.0.0.1:$SERVER_PORT/?selftest" profile
        profile="$(mktemp -d "$TMP_DIR/chromium.XXXXXX")"
        spawn "$browser_log" "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
            --no-first-run --disable-background-networking --disable-component-update \
            --disable-sync --disable-dev-shm-usage --user-data-dir="$profile" \
            --remote-debugging-address=127.0.0.1 --remote-debugging-port=0 "$url"
        local browser_pid=$SPAWNED
        timeout -k 5 "$T" node "$HELPERS/browser_check.js" --user-data-dir "$profile" --url "$url" \
            --timeout-ms "$(((T > 5 ? T - 2 : T) * 1000))" > "$check_out" 2> "$check_log" || status=$?
        # shellcheck disable=SC2086
        detail="$(verdict "$check_out" $expected 2>&1)" || ((status != 0)) || status=1
        ((status != 124)) || detail="timed out after ${T}s; $detail"
        stop "$browser_pid"
        rm -rf "$profile"
    else
        status=1
        detail="echo_server did not start"
    fi
    stop "$SERVER_PID"
    record "$name" "$status" "$detail" "$check_out" "$check_log" "$server_log" "$browser_log"
}

# --- setup ----------------------------------------------------------------------

rm -rf "$LOGS"
mkdir -p "$LOGS"
TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/weft-interop.XXXXXX")"

if [[ ! -x "$PY" ]]; then
    log "creating $VENV"
    timeout 120 python3 -m venv "$VENV"
fi
installed="$("$PY" -c 'import importlib.metadata as m; print(m.version("websockets"))' 2>/dev/null || true)"
if [[ "$installed" != "$WEBSOCKETS_VERSION" ]]; then
    log "installing websockets==$WEBSOCKETS_VERSION into $VENV"
    timeout 300 "$PY" -m pip install --quiet --disable-pip-version-check "websockets==$WEBSOCKETS_VERSION"
fi

ensure_node_ws
ws_wanted=$WS_VERSION
ensure_chromium

log "building the echo_server and echo_check examples (release)"
timeout 900 cargo build --release --quiet --example echo_server --example echo_check
[[ -x "$ECHO_SERVER" && -x "$ECHO_CHECK" ]] || die "example binaries missing in $EXAMPLES_DIR"

log "websockets $("$PY" -c 'import websockets; print(websockets.__version__)'), ws $ws_wanted," \
    "node $(node --version), $("$CHROMIUM" --version 2>/dev/null | head -n 1)"

# --- the checks -----------------------------------------------------------------
# Parameters are RFC 7692 names in each side's own role: a client requests
# server_* and offers client_*; a server uses server_* and asks client_*.
# memory=hibernate is weft's --deflate-memory (contexts given up between
# messages, the window primed back as a dictionary).

CHECKS_START=$SECONDS

for peer in python-websockets node-ws; do
    # The peer as client, our echo_server as server.
    client_case "$peer" "" "" ""
    client_case "$peer" "server_max_window_bits=9" "" "server_max_window_bits=9"
    client_case "$peer" "server_max_window_bits=12 client_max_window_bits=12" "" "server_max_window_bits=12"
    client_case "$peer" "server_max_window_bits=15 client_max_window_bits=15" "" "server_max_window_bits=15"
    client_case "$peer" "client_max_window_bits=9" "" ""
    client_case "$peer" "server_no_context_takeover" "" "server_no_context_takeover"
    client_case "$peer" "client_no_context_takeover" "" ""
    client_case "$peer" "" "server_max_window_bits=9 client_max_window_bits=12" \
        "server_max_window_bits=9 client_max_window_bits=12"
    client_case "$peer" "" "server_no_context_takeover client_no_context_takeover" \
        "server_no_context_takeover client_no_context_takeover"
    client_case "$peer" "client_max_window_bits=12" "memory=hibernate" ""

    # Our echo_check as client, the peer's echo server.
    if [[ "$peer" == python-websockets ]]; then
        # websockets' default server policy (compression="deflate").
        server_case "$peer" "" "" "server_max_window_bits=12 client_max_window_bits=12"
    else
        server_case "$peer" "" "" ""
    fi
    server_case "$peer" "" "server_max_window_bits=9" "server_max_window_bits=9"
    server_case "$peer" "" "client_max_window_bits=9" ""
    server_case "$peer" "server_max_window_bits=9" "" "server_max_window_bits=9"
    server_case "$peer" "client_max_window_bits=9" "" "client_max_window_bits=9"
    server_case "$peer" "server_max_window_bits=12 client_max_window_bits=15" "" \
        "server_max_window_bits=12 client_max_window_bits=15"
    server_case "$peer" "" "server_no_context_takeover" "server_no_context_takeover"
    server_case "$peer" "" "client_no_context_takeover" ""
    server_case "$peer" "server_no_context_takeover client_no_context_takeover" "" \
        "server_no_context_takeover client_no_context_takeover"
    server_case "$peer" "client_max_window_bits=12" "memory=hibernate" "client_max_window_bits=12"
done

# Chromium as client: echo_page.html?selftest, served by echo_server.
browser_case "" ""
browser_case "server_max_window_bits=9 client_max_window_bits=12" "server_max_window_bits=9 client_max_window_bits=12"
browser_case "server_no_context_takeover client_no_context_takeover" \
    "server_no_context_takeover client_no_context_takeover"
browser_case "memory=hibernate" ""

log "checks took $((SECONDS - CHECKS_START))s; logs in ${LOGS#"$ROOT"/}/"
echo "interop: $PASSED passed, $FAILED failed"

# Per-frame deflate against Netty (deflate-frame, x-webkit-deflate-frame),
# both roles: its own script, run from here so one command covers all peers.
netty_rc=0
if [[ -z "${INTEROP_SKIP_NETTY:-}" ]]; then
    bash "$ROOT/scripts/interop/netty.sh" || netty_rc=$?
fi
((FAILED == 0 && PASSED > 0 && netty_rc == 0))
