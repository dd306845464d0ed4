#!/usr/bin/env bash
# Run the Autobahn TestSuite conformance cases against weft, in both roles,
# with kosoku (a Python 3 runner of the Autobahn case files, from PyPI).
#
#   server role: our echo_server example is driven by `kosoku -m fuzzingclient`
#   client role: our autobahn_client example drives `kosoku -m fuzzingserver`
#                (Autobahn protocol: /getCaseCount, /runCase?case=N&agent=A,
#                /updateReports?agent=A; kosoku exits and writes its report
#                when /updateReports arrives)
#
# Reports (Autobahn layout: index.json + index.html + one .json/.html per case):
#   reports/servers/   results for our server   (agent = its Server header)
#   reports/clients/   results for our client   (agent = $AGENT)
#   reports/*.log      output of every process the script started
#
# Exit status is 0 only if both roles ran at least one case and every selected
# case is OK, NON-STRICT or INFORMATIONAL (with an acceptable closing
# handshake), as judged by scripts/autobahn_summary.py.
#
# Every wait is bounded, and all of them together fit in $TIME_BUDGET seconds,
# so the script cannot hang. Only loopback addresses are used.
#
# Environment overrides (defaults in brackets):
#   AUTOBAHN_EXCLUDE      space-separated case ids/globs to skip [none]
#   AUTOBAHN_PARALLELISM  cases run at once against our server [2]
#   AUTOBAHN_TIME_BUDGET  seconds for the whole script [2000]
#   AUTOBAHN_ROLE_TIMEOUT seconds for the two roles' runs of the cases [1200]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --- configuration ------------------------------------------------------------

# Case ids/globs to skip (e.g. "12.* 13.*" for the permessage-deflate cases).
# The whole suite runs by default: weft-extensions implements compression.
EXCLUDE="${AUTOBAHN_EXCLUDE-}"
PARALLELISM="${AUTOBAHN_PARALLELISM:-2}"
AGENT="weft"                       # our client's agent name in the reports

KOSOKU_VERSION="0.1.0"
VENV="$ROOT/.venv"
REPORTS="$ROOT/reports"
SERVER_REPORT="$REPORTS/servers"
CLIENT_REPORT="$REPORTS/clients"
EXAMPLES_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"

TIME_BUDGET="${AUTOBAHN_TIME_BUDGET:-2000}"   # whole script, seconds
ROLE_TIMEOUT="${AUTOBAHN_ROLE_TIMEOUT:-1200}" # both roles' runs of the cases (side by side)
STARTUP_TIMEOUT=30                           # a process starting to listen
REPORT_TIMEOUT=60                            # fuzzingserver writing its report
STOP_TIMEOUT=5                               # a process exiting after SIGTERM

# Split EXCLUDE into words without glob-expanding them, then into kosoku flags.
read -r -a EXCLUDE_PATTERNS <<< "$EXCLUDE"
KOSOKU_EXCLUDE_ARGS=()
SUMMARY_EXCLUDE_ARGS=()
for pattern in ${EXCLUDE_PATTERNS[@]+"${EXCLUDE_PATTERNS[@]}"}; do
    KOSOKU_EXCLUDE_ARGS+=(-x "$pattern")
    SUMMARY_EXCLUDE_ARGS+=(--exclude "$pattern")
done

# --- helpers ------------------------------------------------------------------

log() { printf '[autobahn %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# budget CAP: set T to the seconds the next step may take, i.e. its own cap
# cut to what is left of TIME_BUDGET; dies once the budget is used up.
# (Sets a variable rather than printing, so that `die` ends the script itself.)
T=0
budget() {
    local left=$((TIME_BUDGET - SECONDS))
    ((left > 0)) || die "time budget of ${TIME_BUDGET}s exhausted"
    T=$(($1 < left ? $1 : left))
}

# Background processes started by this script; cleanup stops them all.
BG_PIDS=()

# stop PID: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; reap it and drop
# it from BG_PIDS.
stop() {
    local pid=$1 i p rest=()
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for p in ${BG_PIDS[@]+"${BG_PIDS[@]}"}; do
        [[ "$p" == "$pid" ]] || rest+=("$p")
    done
    BG_PIDS=(${rest[@]+"${rest[@]}"})
}

cleanup() {
    local pid
    for pid in ${BG_PIDS[@]+"${BG_PIDS[@]}"}; do
        stop "$pid"
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Print a free loopback TCP port that differs from any given as arguments.
free_port() {
    python3 - "$@" <<'EOF'
import socket, sys
taken = {int(p) for p in sys.argv[1:]}
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port not in taken:
        print(port)
        break
EOF
}

# wait_for_port PORT PID NAME LOGFILE: until 127.0.0.1:PORT accepts a TCP
# connection, at most STARTUP_TIMEOUT seconds; dies if PID exits first.
wait_for_port() {
    local port=$1 pid=$2 name=$3 logfile=$4
    budget "$STARTUP_TIMEOUT"
    local deadline=$((SECONDS + T))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited before listening on 127.0.0.1:$port (log: $logfile)"
        fi
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            log "$name is listening on 127.0.0.1:$port"
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$logfile" >&2 || true
    die "$name did not listen on 127.0.0.1:$port within ${STARTUP_TIMEOUT}s (log: $logfile)"
}

# wait_exit PID SECONDS: wait for a background process to exit on its own.
# Returns 0 once it has exited, 1 if it is still running after SECONDS.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    ! kill -0 "$pid" 2>/dev/null
}

# Ask the fuzzing server at 127.0.0.1:PORT to end the run and write its report,
# as the client would have with /updateReports (one WebSocket upgrade request).
request_update_reports() {
    timeout 10 python3 - "$1" "$AGENT" <<'EOF' || true
import socket, sys
port, agent = int(sys.argv[1]), sys.argv[2]
try:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"GET /updateReports?agent={agent} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .encode()
        )
        s.recv(1024)
except OSError as err:
    print(f"/updateReports request failed: {err}", file=sys.stderr)
EOF
}

# Describe a command's exit status (kosoku exits 1 whenever a case failed).
describe_rc() {
    case "$1" in
        0) echo "exit 0" ;;
        124 | 137) echo "TIMED OUT (exit $1)" ;;
        *) echo "exit $1" ;;
    esac
}

# --- setup: kosoku in .venv, our examples built ---------------------------------

mkdir -p "$REPORTS"

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    budget 120
    timeout "$T" python3 -m venv "$VENV"
fi
installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null || true)"
if [[ "$installed" != "$KOSOKU_VERSION" ]]; then
    log "installing kosoku==$KOSOKU_VERSION into $VENV"
    budget 300
    timeout "$T" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kosoku==$KOSOKU_VERSION"
fi
KOSOKU="$VENV/bin/kosoku"
[[ -x "$KOSOKU" ]] || die "kosoku not found at $KOSOKU"

log "building the echo_server and autobahn_client examples (release)"
budget 600
timeout "$T" cargo build --release --example echo_server --example autobahn_client
ECHO_SERVER="$EXAMPLES_DIR/echo_server"
AUTOBAHN_CLIENT="$EXAMPLES_DIR/autobahn_client"
[[ -x "$ECHO_SERVER" && -x "$AUTOBAHN_CLIENT" ]] || die "example binaries missing in $EXAMPLES_DIR"

# Stale reports must never be mistaken for this run's.
rm -rf "$SERVER_REPORT" "$CLIENT_REPORT"

SERVER_PORT="$(free_port)"
FUZZER_PORT="$(free_port "$SERVER_PORT")"
log "excluded cases: ${EXCLUDE:-none}; parallelism against our server: $PARALLELISM"

# --- both roles at once ----------------------------------------------------------
# Role 1: our echo_server, driven by kosoku's fuzzing client. Role 2: our
# autobahn_client, against kosoku's fuzzing server. They share nothing (own
# processes, ports and report folders), and each is bound by one Python
# process, so on two cores running them side by side takes about as long as
# the longer of the two instead of their sum.

log "server role: starting echo_server on 127.0.0.1:$SERVER_PORT"
"$ECHO_SERVER" --addr "127.0.0.1:$SERVER_PORT" > "$REPORTS/echo_server.log" 2>&1 &
server_pid=$!
BG_PIDS+=("$server_pid")
wait_for_port "$SERVER_PORT" "$server_pid" echo_server "$REPORTS/echo_server.log"

log "client role: kosoku -m fuzzingserver 127.0.0.1:$FUZZER_PORT (log: reports/kosoku-fuzzingserver.log)"
"$KOSOKU" -m fuzzingserver "127.0.0.1:$FUZZER_PORT" \
    ${KOSOKU_EXCLUDE_ARGS[@]+"${KOSOKU_EXCLUDE_ARGS[@]}"} \
    -o "$CLIENT_REPORT" > "$REPORTS/kosoku-fuzzingserver.log" 2>&1 &
fuzzer_pid=$!
BG_PIDS+=("$fuzzer_pid")
wait_for_port "$FUZZER_PORT" "$fuzzer_pid" "kosoku fuzzingserver" "$REPORTS/kosoku-fuzzingserver.log"

budget "$ROLE_TIMEOUT"
log "server role: kosoku -m fuzzingclient ws://127.0.0.1:$SERVER_PORT -p $PARALLELISM (log: reports/kosoku-fuzzingclient.log)"
timeout -k 10 "$T" \
    "$KOSOKU" -m fuzzingclient "ws://127.0.0.1:$SERVER_PORT" \
    -p "$PARALLELISM" ${KOSOKU_EXCLUDE_ARGS[@]+"${KOSOKU_EXCLUDE_ARGS[@]}"} \
    -o "$SERVER_REPORT" > "$REPORTS/kosoku-fuzzingclient.log" 2>&1 &
fuzzing_client_pid=$!
BG_PIDS+=("$fuzzing_client_pid")
log "client role: autobahn_client --url ws://127.0.0.1:$FUZZER_PORT --agent $AGENT (log: reports/autobahn_client.log)"
timeout -k 10 "$T" \
    "$AUTOBAHN_CLIENT" --url "ws://127.0.0.1:$FUZZER_PORT" --agent "$AGENT" \
    > "$REPORTS/autobahn_client.log" 2>&1 &
client_pid=$!
BG_PIDS+=("$client_pid")

# Both are bounded by `timeout` above, so these waits end.
rc=0
wait "$fuzzing_client_pid" || rc=$?
log "server role: kosoku finished: $(describe_rc "$rc")"
if ! kill -0 "$server_pid" 2>/dev/null; then
    log "server role: WARNING: echo_server exited during the run (log: reports/echo_server.log)"
fi
stop "$server_pid"
stop "$fuzzing_client_pid"
rc=0
wait "$client_pid" || rc=$?
log "client role: autobahn_client finished: $(describe_rc "$rc")"
stop "$client_pid"

# After /updateReports the fuzzing server writes its report and exits. If the
# client never sent it (crash, timeout), send it ourselves so that the cases
# that did run are still reported; the rest show up as MISSING.
budget 10
if ! wait_exit "$fuzzer_pid" "$T"; then
    log "client role: fuzzingserver still running; requesting /updateReports"
    request_update_reports "$FUZZER_PORT"
    budget "$REPORT_TIMEOUT"
    wait_exit "$fuzzer_pid" "$T" \
        || log "client role: WARNING: fuzzingserver did not finish its report in time"
fi
stop "$fuzzer_pid"

# --- summary ------------------------------------------------------------------

log "summarising reports"
budget 60
timeout "$T" "$VENV/bin/python" "$ROOT/scripts/autobahn_summary.py" \
    ${SUMMARY_EXCLUDE_ARGS[@]+"${SUMMARY_EXCLUDE_ARGS[@]}"} \
    "server=reports/servers" "client=reports/clients"
