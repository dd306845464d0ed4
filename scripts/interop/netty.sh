#!/usr/bin/env bash
# Per-frame deflate (deflate-frame / x-webkit-deflate-frame) interop checks:
# weft against Netty (Debian's libnetty-java, 4.1.x) in both roles.
#
# server role: Netty's echo server (scripts/interop/netty/NettyEcho.java,
#   started per configuration) and our echo_check as the client.
# client role: Netty's client (same program) against our echo_server.
#
# Netty configurations ("netty=" in the check lines):
#   stock        Netty's own DeflateFrame{Server,Client}ExtensionHandshaker.
#                It never sends a parameter and declines any offer (server)
#                or answer (client) that carries one, so weft offers with
#                parameters must be declined cleanly.
#   names=X      the stock server handshaker restricted to the name X.
#   permessage   Netty's permessage-deflate handshaker offered too (as in its
#                WebSocketServerCompressionHandler / WebSocketClientCompressionHandler).
#   codec        InteropPerFrame.java: a handshaker that does take
#                max_window_bits / no_context_takeover, over Netty's own
#                per-frame codec (PerFrameDeflateEncoder/Decoder: window size
#                and no-context mode). A parameter binds the compressor of
#                the side that receives it (the draft's and weft's reading).
#                When Netty is told no_context_takeover for its DEcompressor
#                it resets it after every message, so a weft compressor that
#                kept its window would fail those checks.
#   respond=P    the codec server answers with parameter P (binds weft's
#                client compressor).
#   aggregate    the server echoes whole messages instead of frame by frame
#                (needed when Netty's encoder is no-context: it resets per
#                message, not per frame).
#
# What Netty 4.1.48 itself does (javap/sources of its handshakers): the
# client offers a bare `deflate-frame` or `x-webkit-deflate-frame` and accepts
# only a bare answer (either name); the server accepts only a bare offer and
# answers with the offered name. Its codec always uses a 15-bit window with
# context takeover. The codec checks use max_window_bits 10 and 12 only:
# Netty's zlib encoders refuse 8 for raw deflate ("windowBits: 8 (expected:
# 9-15)", so InteropPerFrame declines it), and JZlibEncoder at 9 truncates its
# output for poorly compressible data (output buffer sized for 1.001 x input).
#
# Every negotiated check also requires RSV1 (compressed) data frames on the
# wire in both directions, counted by Netty between its frame codec and its
# extension codec.
#
# Prints `interop: netty <role> <name> netty=<config> weft=<params>: ok|FAIL`
# per check (role is Netty's) and `interop netty: N passed, M failed` at the
# end; exits 1 if any check failed.
#
# Installs when missing (apt-get): libnetty-java, libjzlib-java (Netty's
# encoder needs JZlib for windows under 15 bits), default-jdk-headless when
# javac is missing. Every wait is bounded; background processes are stopped
# on exit. Loopback only.
#
# Environment (defaults in brackets):
#   INTEROP_ONLY          run only the checks whose line matches this
#                         extended regex (bash =~) [all]
#   INTEROP_CHECK_TIMEOUT seconds for one check [60]
#   INTEROP_TIME_BUDGET   seconds for all checks, after setup [170]
#   INTEROP_NETTY_LOGS    keep the logs in this directory [temporary, removed]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

HELPERS="$ROOT/scripts/interop/netty"
EXAMPLES_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
ECHO_SERVER="$EXAMPLES_DIR/echo_server"
ECHO_CHECK="$EXAMPLES_DIR/echo_check"
ECHO_CHECK_MESSAGES=40      # echo_check cycles 8 sizes (0 B..1 MiB), every 4th fragmented
NETTY_MESSAGES=36           # NettyEcho client: 9 sizes (0 B..256 KiB) x 4 kinds
JAVA_DIR=/usr/share/java
NETTY_JARS=(netty-common netty-buffer netty-transport netty-codec netty-codec-http
            netty-handler netty-resolver jctools-core jzlib)
JAVA_OPTS=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx512m -Djava.net.preferIPv4Stack=true)

ONLY="${INTEROP_ONLY-}"
CHECK_TIMEOUT="${INTEROP_CHECK_TIMEOUT:-60}"
TIME_BUDGET="${INTEROP_TIME_BUDGET:-170}"
KEEP_LOGS="${INTEROP_NETTY_LOGS-}"
STARTUP_TIMEOUT=20          # a server printing its listening line
STOP_TIMEOUT=5              # a process group exiting after SIGTERM
CLOSE_TIMEOUT=5             # Netty's server logging a connection's end

log() { printf '[interop netty %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

AS_ROOT=(env DEBIAN_FRONTEND=noninteractive)
((EUID == 0)) || AS_ROOT=(sudo -n "${AS_ROOT[@]}")

# --- processes ------------------------------------------------------------------

BG_PIDS=()
TMP_DIR=""

# stop PID: SIGTERM to its process group, wait up to STOP_TIMEOUT, SIGKILL.
stop() {
    local pid=$1 i p rest=()
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true
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
    [[ -z "$TMP_DIR" ]] || rm -rf "$TMP_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server LOGFILE REGEX CMD...: start CMD in its own process group and
# wait for REGEX (with a port as its last number) in LOGFILE; sets SERVER_PID
# and SERVER_PORT.
SERVER_PID=""
SERVER_PORT=""
start_server() {
    local logfile=$1 regex=$2 deadline=$((SECONDS + STARTUP_TIMEOUT)) line
    shift 2
    setsid "$@" > "$logfile" 2>&1 < /dev/null &
    SERVER_PID=$!
    BG_PIDS+=("$SERVER_PID")
    SERVER_PORT=""
    while ((SECONDS < deadline)); do
        line="$(grep -m1 -o -E "$regex" "$logfile" 2>/dev/null || true)"
        if [[ -n "$line" ]]; then
            SERVER_PORT="$(grep -o -E '[0-9]+$' <<< "$line")"
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited before listening" >> "$logfile"; return 1; }
        sleep 0.1
    done
    echo "server did not listen within ${STARTUP_TIMEOUT}s" >> "$logfile"
    return 1
}

# --- bookkeeping ----------------------------------------------------------------

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

# record LABEL STATUS DETAIL LOGFILE...: the check's line; on failure also
# the tails of its logs.
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
            echo "    --- $(basename "$f") (last lines)"
            tail -n 12 "$f" | cut -c1-400 | sed 's/^/    | /'
        done
    fi
}

selected() { [[ -z "$ONLY" || "$1" =~ $ONLY ]]; }

# label ROLE NAME NETTY_WORDS WEFT_WORDS
label() {
    local n=${3:-stock} w=${4:-default}
    echo "netty $1 $2 netty=${n// /,} weft=${w// /,}"
}

# --- server role: Netty's echo server, our echo_check ----------------------------

NETTY_SERVER_LOG=""
NETTY_SERVER_WORDS=""

# netty_server WORD...: (re)start Netty's echo server. Words: stock (default),
# names=A[,B], permessage, codec, respond=P[=V], aggregate.
netty_server() {
    [[ -z "$SERVER_PID" ]] || stop "$SERVER_PID"
    SERVER_PID=""
    NETTY_SERVER_WORDS="$*"
    local args=() w
    for w in "$@"; do
        case "$w" in
            stock) ;;
            names=*) args+=(--names "${w#names=}") ;;
            permessage) args+=(--permessage) ;;
            codec) args+=(--params) ;;
            respond=*) args+=(--respond "${w#respond=}") ;;
            aggregate) args+=(--aggregate) ;;
            *) die "unknown netty server word $w" ;;
        esac
    done
    CASE_NO=$((CASE_NO + 1))
    NETTY_SERVER_LOG="$LOGS/$(printf '%02d' "$CASE_NO")-netty-server.log"
    start_server "$NETTY_SERVER_LOG" '"event":"listening","port":[0-9]+' \
        java "${JAVA_OPTS[@]}" -cp "$CLASSPATH_NETTY" NettyEcho server --port 0 ${args[@]+"${args[@]}"} \
        || { stop "$SERVER_PID"; SERVER_PID=""; return 1; }
}

# server_verdict CHECK_OUT SERVER_CLOSED_LINE NAME EXPECT [RESP_PARAM...]:
# EXPECT is "negotiated" or "declined".
server_verdict() {
    python3 - "$@" <<'EOF'
import json, sys
out, closed, name, expect, *resp = sys.argv[1:]
lines = [l for l in open(out, encoding="utf-8", errors="replace") if l.lstrip().startswith("{")]
if not lines:
    sys.exit("echo_check printed no result line")
r = json.loads(lines[-1])
c = json.loads(closed) if closed else None
if expect == "declined":
    if r.get("ok"):
        sys.exit(f"expected Netty to decline, but {r.get('negotiated')!r} was negotiated")
    err = r.get("error", "")
    if 'was not negotiated (server answered "")' not in err:
        sys.exit(f"expected a clean decline, echo_check said: {err}")
    if c is None:
        sys.exit("Netty logged no connection")
    if c.get("answered") is not None:
        sys.exit(f"Netty answered {c.get('answered')!r}")
    print(f"declined as expected: Netty answered no extension to {c.get('offered')!r}")
    sys.exit(0)
if not r.get("ok"):
    sys.exit(f"echo_check failed: {r.get('error', '?')}")
negotiated = r.get("negotiated", "")
first, *params = [p.strip() for p in negotiated.split(",")[0].split(";")]
if first != name:
    sys.exit(f"negotiated {negotiated!r}, wanted {name}")
missing = [p for p in resp if p not in params]
if missing:
    sys.exit(f"negotiated {negotiated!r}, lacking {' '.join(missing)}")
if c is None:
    sys.exit("Netty logged no end of the connection")
w = c["wire"]
if w["in_rsv1"] == 0 or w["out_rsv1"] == 0:
    sys.exit(f"{name} negotiated but not used both ways: {w}")
print(f"offered {c.get('offered')!r}, Netty answered {c.get('answered')!r}; {r.get('messages')} messages; "
      f"wire: weft->netty {w['in_rsv1']}/{w['in_frames']} frames compressed ({w['in_bytes']} B), "
      f"netty->weft {w['out_rsv1']}/{w['out_frames']} ({w['out_bytes']} B)")
EOF
}

# server_case NAME "WEFT_PARAMS" [declined] [RESP_PARAM...]: echo_check
# offering NAME with WEFT_PARAMS against the running Netty server.
server_case() {
    local name=$1 weft_words=$2 expect=negotiated
    shift 2
    if [[ "${1-}" == declined ]]; then
        expect=declined
        shift
    fi
    local lbl status=0 detail closed="" before p
    lbl="$(label server "$name" "$NETTY_SERVER_WORDS" "$weft_words")"
    selected "$lbl" || return 0
    CASE_NO=$((CASE_NO + 1))
    local base
    base="$LOGS/$(printf '%02d' "$CASE_NO")"
    local check_out="$base-echo_check.out" check_log="$base-echo_check.log"
    if ! budget; then
        record "$lbl" 1 "not run: time budget of ${TIME_BUDGET}s exhausted"
        return 0
    fi
    if [[ -z "$SERVER_PID" ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
        record "$lbl" 1 "Netty server not running" "$NETTY_SERVER_LOG"
        return 0
    fi
    local args=()
    for p in $weft_words; do args+=(--param "$p"); done
    before="$(grep -c '"event":"closed"' "$NETTY_SERVER_LOG" || true)"
    timeout -k 5 "$T" "$ECHO_CHECK" --url "ws://127.0.0.1:$SERVER_PORT/" \
        --messages "$ECHO_CHECK_MESSAGES" --extension "$name" ${args[@]+"${args[@]}"} \
        > "$check_out" 2> "$check_log" || status=$?
    local deadline=$((SECONDS + CLOSE_TIMEOUT))
    while ((SECONDS < deadline)); do
        (($(grep -c '"event":"closed"' "$NETTY_SERVER_LOG" || true) > before)) && break
        sleep 0.1
    done
    closed="$(grep '"event":"closed"' "$NETTY_SERVER_LOG" | sed -n "$((before + 1))p" || true)"
    if [[ "$expect" == declined ]]; then
        # echo_check exits 1 when its extension was not negotiated.
        if detail="$(server_verdict "$check_out" "$closed" "$name" declined 2>&1)"; then
            status=0
        else
            status=1
        fi
    else
        detail="$(server_verdict "$check_out" "$closed" "$name" negotiated "$@" 2>&1)" \
            || ((status != 0)) || status=1
        ((status != 124)) || detail="timed out after ${T}s; $detail"
    fi
    record "$lbl" "$status" "$detail" "$check_out" "$check_log" "$NETTY_SERVER_LOG"
}

# --- client role: Netty's client, our echo_server -------------------------------

WEFT_SERVER_LOG=""
WEFT_SERVER_ARGS=""

# weft_server ARG...: (re)start our echo_server with these options.
weft_server() {
    [[ -z "$SERVER_PID" ]] || stop "$SERVER_PID"
    SERVER_PID=""
    WEFT_SERVER_ARGS="$*"
    CASE_NO=$((CASE_NO + 1))
    WEFT_SERVER_LOG="$LOGS/$(printf '%02d' "$CASE_NO")-echo_server.log"
    start_server "$WEFT_SERVER_LOG" 'listening on ws://127\.0\.0\.1:[0-9]+' \
        "$ECHO_SERVER" --addr 127.0.0.1:0 "$@" || { stop "$SERVER_PID"; SERVER_PID=""; return 1; }
}

# client_case "OFFERS" "NETTY_PARAMS" EXPECT: Netty's client offering OFFERS
# (comma-separated, in order) with NETTY_PARAMS on its per-frame offers;
# EXPECT is the extension that must be negotiated, or "none".
client_case() {
    local offers=$1 netty_words=$2 expect=$3 lbl status=0 detail o p
    local nlabel=stock
    [[ -z "$netty_words" ]] || nlabel="codec $netty_words"
    [[ "$offers" != *permessage-deflate* ]] || nlabel+=" permessage"
    lbl="$(label client "$offers" "$nlabel" "$WEFT_SERVER_ARGS")"
    lbl="$lbl expect=$expect"
    selected "$lbl" || return 0
    CASE_NO=$((CASE_NO + 1))
    local base
    base="$LOGS/$(printf '%02d' "$CASE_NO")"
    local client_out="$base-netty-client.out" client_log="$base-netty-client.log"
    if ! budget; then
        record "$lbl" 1 "not run: time budget of ${TIME_BUDGET}s exhausted"
        return 0
    fi
    if [[ -z "$SERVER_PID" ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
        record "$lbl" 1 "echo_server not running" "$WEFT_SERVER_LOG"
        return 0
    fi
    local args=()
    for o in ${offers//,/ }; do args+=(--offer "$o"); done
    for p in $netty_words; do args+=(--param "$p"); done
    timeout -k 5 "$T" java "${JAVA_OPTS[@]}" -cp "$CLASSPATH_NETTY" NettyEcho client \
        --url "ws://127.0.0.1:$SERVER_PORT/" --messages "$NETTY_MESSAGES" --expect "$expect" \
        ${args[@]+"${args[@]}"} > "$client_out" 2> "$client_log" || status=$?
    detail="$(python3 - "$client_out" 2>&1 <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8", errors="replace") if l.lstrip().startswith("{")]
if not lines:
    sys.exit("Netty client printed no result line")
r = json.loads(lines[-1])
w = r.get("wire", {})
summary = (f"offered {r.get('offered')!r}, weft answered {r.get('answered')!r}; {r.get('messages')} messages; "
           f"wire: netty->weft {w.get('out_rsv1')}/{w.get('out_frames')} frames compressed ({w.get('out_bytes')} B), "
           f"weft->netty {w.get('in_rsv1')}/{w.get('in_frames')} ({w.get('in_bytes')} B)")
if not r.get("ok"):
    sys.exit(f"Netty client failed: {r.get('error', '?')}; {summary}")
print(summary)
EOF
)" || ((status != 0)) || status=1
    ((status != 124)) || detail="timed out after ${T}s; $detail"
    record "$lbl" "$status" "$detail" "$client_out" "$client_log" "$WEFT_SERVER_LOG"
}

# --- setup ----------------------------------------------------------------------

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/weft-interop-netty.XXXXXX")"
if [[ -n "$KEEP_LOGS" ]]; then
    mkdir -p "$KEEP_LOGS"
    LOGS="$(cd "$KEEP_LOGS" && pwd)"
else
    LOGS="$TMP_DIR/logs"
    mkdir -p "$LOGS"
fi

SETUP_START=$SECONDS
missing=()
command -v javac > /dev/null && command -v java > /dev/null || missing+=(default-jdk-headless)
[[ -f "$JAVA_DIR/netty-codec-http.jar" ]] || missing+=(libnetty-java)
[[ -f "$JAVA_DIR/jzlib.jar" ]] || missing+=(libjzlib-java)
command -v python3 > /dev/null || missing+=(python3)
if ((${#missing[@]})); then
    log "installing ${missing[*]} (apt-get)"
    timeout 300 "${AS_ROOT[@]}" apt-get update -qq
    timeout 900 "${AS_ROOT[@]}" apt-get install -y -qq "${missing[@]}" > "$LOGS/apt.log" 2>&1 \
        || { tail -n 20 "$LOGS/apt.log" >&2; die "installing ${missing[*]} failed"; }
fi
INSTALL_SECONDS=$((SECONDS - SETUP_START))

CLASSPATH_NETTY="$TMP_DIR/classes"
for j in "${NETTY_JARS[@]}"; do
    [[ -f "$JAVA_DIR/$j.jar" ]] || die "$JAVA_DIR/$j.jar missing"
    CLASSPATH_NETTY+=":$JAVA_DIR/$j.jar"
done

log "building the echo_server and echo_check examples (release)"
timeout 900 cargo build --release --quiet --example echo_server --example echo_check
[[ -x "$ECHO_SERVER" && -x "$ECHO_CHECK" ]] || die "example binaries missing in $EXAMPLES_DIR"

log "compiling scripts/interop/netty/*.java"
mkdir -p "$TMP_DIR/classes"
timeout 120 javac -nowarn -encoding UTF-8 -d "$TMP_DIR/classes" -cp "$CLASSPATH_NETTY" "$HELPERS"/*.java \
    > "$LOGS/javac.log" 2>&1 || { cat "$LOGS/javac.log" >&2; die "javac failed"; }

NETTY_VERSION="$(dpkg-query -W -f='${Version}' libnetty-java 2>/dev/null || echo '?')"
log "libnetty-java $NETTY_VERSION ($(readlink -f "$JAVA_DIR/netty-codec-http.jar")), $(java -version 2>&1 | head -n 1)"

# --- the checks -----------------------------------------------------------------

CHECKS_START=$SECONDS
NAMES=(deflate-frame x-webkit-deflate-frame)

# Netty as server, stock handshaker (both names).
if netty_server stock; then
    for n in "${NAMES[@]}"; do
        server_case "$n" ""
        # Netty 4.1.48 declines any per-frame offer with parameters.
        server_case "$n" "no_context_takeover" declined
        server_case "$n" "max_window_bits=10" declined
    done
else
    record "$(label server '*' stock '')" 1 "Netty server did not start" "$NETTY_SERVER_LOG"
fi

# The stock handshaker restricted to one name.
for n in "${NAMES[@]}"; do
    other=deflate-frame
    [[ "$n" != deflate-frame ]] || other=x-webkit-deflate-frame
    if netty_server stock "names=$n"; then
        server_case "$n" ""
        server_case "$other" "" declined
    else
        record "$(label server '*' "stock names=$n" '')" 1 "Netty server did not start" "$NETTY_SERVER_LOG"
    fi
done

# Stock per-frame plus permessage-deflate (the WebSocketServerCompressionHandler set).
if netty_server stock permessage; then
    for n in "${NAMES[@]}"; do server_case "$n" ""; done
else
    record "$(label server '*' 'stock permessage' '')" 1 "Netty server did not start" "$NETTY_SERVER_LOG"
fi

# Netty's codec with parameters: weft's offer binds Netty's compressor.
if netty_server codec aggregate; then
    for n in "${NAMES[@]}"; do
        server_case "$n" ""
        server_case "$n" "no_context_takeover"
        server_case "$n" "max_window_bits=10"
        server_case "$n" "max_window_bits=12 no_context_takeover"
    done
else
    record "$(label server '*' 'codec aggregate' '')" 1 "Netty server did not start" "$NETTY_SERVER_LOG"
fi

# Netty's answer binds weft's compressor; with no_context_takeover Netty's
# decompressor resets after every message, so weft must really reset.
for resp in no_context_takeover max_window_bits=10 "no_context_takeover max_window_bits=12"; do
    words=()
    for r in $resp; do words+=("respond=$r"); done
    if netty_server codec "${words[@]}"; then
        # shellcheck disable=SC2086 # word list
        for n in "${NAMES[@]}"; do server_case "$n" "" $resp; done
    else
        record "$(label server '*' "codec ${words[*]}" '')" 1 "Netty server did not start" "$NETTY_SERVER_LOG"
    fi
done

# Netty as client against our echo_server accepting only per-frame deflate.
if weft_server --no-deflate; then
    for n in "${NAMES[@]}"; do
        client_case "$n" "" "$n"
        # Offer parameters bind weft's compressor; no_context_takeover makes
        # Netty's decompressor reset after every message.
        client_case "$n" "no_context_takeover" "$n"
        client_case "$n" "max_window_bits=10" "$n"
        client_case "$n" "max_window_bits=12 no_context_takeover" "$n"
    done
else
    record "$(label client '*' stock --no-deflate)" 1 "echo_server did not start" "$WEFT_SERVER_LOG"
fi

# echo_server with permessage-deflate too: it prefers that when both are offered.
if weft_server; then
    client_case "permessage-deflate,deflate-frame" "" permessage-deflate
    client_case "deflate-frame,permessage-deflate" "" permessage-deflate
    client_case "x-webkit-deflate-frame" "" x-webkit-deflate-frame
else
    record "$(label client '*' stock '')" 1 "echo_server did not start" "$WEFT_SERVER_LOG"
fi

# echo_server without per-frame deflate: the offer is declined, data flows uncompressed.
if weft_server --no-deflate --no-deflate-frame; then
    for n in "${NAMES[@]}"; do client_case "$n" "" none; done
else
    record "$(label client '*' stock '--no-deflate --no-deflate-frame')" 1 "echo_server did not start" \
        "$WEFT_SERVER_LOG"
fi

[[ -z "$SERVER_PID" ]] || stop "$SERVER_PID"
SERVER_PID=""

log "checks took $((SECONDS - CHECKS_START))s (installs ${INSTALL_SECONDS}s)"
[[ -z "$KEEP_LOGS" ]] || log "logs in $LOGS"
echo "interop netty: $PASSED passed, $FAILED failed"
((FAILED == 0))
