#!/usr/bin/env bash
# weft-broker end to end, for CI (issue 17):
#   1. starts redis-server (Debian's package, installed when missing) on a
#      free 127.0.0.1 port, without persistence;
#   2. runs the Redis backend's tests against it (WEFT_REDIS_URL);
#   3. starts two weft-broker nodes sharing that Redis, runs broker_check
#      across them (produce on A, consume on B), kill -9's B in the middle
#      of the run, restarts it, and requires "lost": 0;
#   4. the same check against the memory backend on one node;
#   5. and across two memory nodes joined by a broker link (A forwards the
#      check's queue to B over one multiplexed WebSocket).
# Everything it starts is stopped on exit. Bounded: about a minute after
# the build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MESSAGES=${BROKER_CHECK_MESSAGES:-3000}
RATE=${BROKER_CHECK_RATE:-1000}
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_tcp() { # port, what
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "broker.sh: $2 did not start on port $1" >&2
    return 1
}

if ! command -v redis-server >/dev/null 2>&1; then
    echo "== installing redis-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

echo "== building weft-broker and broker_check"
cargo build -q -p weft-broker --bin weft-broker --example broker_check
BROKER="$TARGET/debug/weft-broker"
CHECK="$TARGET/debug/examples/broker_check"

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_tcp "$REDIS_PORT" redis-server
export WEFT_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
echo "== redis-server on $WEFT_REDIS_URL"

echo "== Redis backend tests (cargo test -p weft-broker --test redis)"
cargo test -q -p weft-broker --test redis

start_node() { # port, backend, log
    "$BROKER" --addr "127.0.0.1:$1" --backend "$2" --redis-prefix "check-$$" \
        --redeliver-after-ms 1000 >>"$3" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_tcp "$1" "weft-broker ($2)"
}

check_json() { # file, label, least reconnects (proves a node died mid-run)
    local line
    line=$(tail -n 1 "$1")
    echo "$2: $line"
    python3 - "$line" "$2" "${3:-0}" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
print(f"{sys.argv[2]}: lost: {r['lost']} (sent {r['sent']}, received {r['received_unique']}, duplicates {r['duplicates']}, redelivered {r['redelivered']}, reconnects {r['reconnects']})")
if r["reconnects"] < int(sys.argv[3]):
    print(f"{sys.argv[2]}: expected a reconnect: the node was not killed during the run")
    sys.exit(1)
sys.exit(0 if r["ok"] and r["lost"] == 0 else 1)
EOF
}

echo "== two Redis nodes, kill -9 of the consuming node mid-run"
PORT_A=$(free_port)
PORT_B=$(free_port)
start_node "$PORT_A" "$WEFT_REDIS_URL" "$WORK/node-a.log"
start_node "$PORT_B" "$WEFT_REDIS_URL" "$WORK/node-b.log"
PID_B=$LAST_PID
"$CHECK" --urls "ws://127.0.0.1:$PORT_A/,ws://127.0.0.1:$PORT_B/" \
    --messages "$MESSAGES" --rate "$RATE" --settle-secs 15 >"$WORK/check-redis.json" &
CHECK_PID=$!
PIDS+=("$CHECK_PID")
sleep "$(python3 -c "print(round($MESSAGES / $RATE / 3, 2))")"
echo "killing node B (pid $PID_B) with SIGKILL"
kill -9 "$PID_B"
wait "$PID_B" 2>/dev/null || true
sleep 0.5
echo "restarting node B on port $PORT_B"
start_node "$PORT_B" "$WEFT_REDIS_URL" "$WORK/node-b.log"
status=0
wait "$CHECK_PID" || status=$?
check_json "$WORK/check-redis.json" "redis, 2 nodes, B killed" 1 || status=1
if [ "$status" -ne 0 ]; then
    echo "broker.sh: the Redis check failed" >&2
    tail -n 20 "$WORK"/node-*.log >&2 || true
    exit 1
fi

echo "== memory backend, one node"
PORT_M=$(free_port)
start_node "$PORT_M" memory "$WORK/node-m.log"
status=0
"$CHECK" --urls "ws://127.0.0.1:$PORT_M/" --messages "$MESSAGES" \
    --settle-secs 5 >"$WORK/check-memory.json" || status=$?
check_json "$WORK/check-memory.json" "memory, 1 node" || status=1
if [ "$status" -ne 0 ]; then
    echo "broker.sh: the memory check failed" >&2
    exit 1
fi

echo "== memory backend, two nodes, A linked to B"
PORT_LB=$(free_port)
PORT_LA=$(free_port)
start_node "$PORT_LB" memory "$WORK/node-lb.log"
"$BROKER" --addr "127.0.0.1:$PORT_LA" --link "ws://127.0.0.1:$PORT_LB/" \
    --link-destinations queue/broker-check.link >>"$WORK/node-la.log" 2>&1 &
PIDS+=($!)
wait_tcp "$PORT_LA" "weft-broker (linked)"
status=0
"$CHECK" --urls "ws://127.0.0.1:$PORT_LA/,ws://127.0.0.1:$PORT_LB/" --queue /queue/broker-check.link \
    --messages "$MESSAGES" --settle-secs 5 >"$WORK/check-link.json" || status=$?
check_json "$WORK/check-link.json" "memory, 2 linked nodes" || status=1
if [ "$status" -ne 0 ]; then
    echo "broker.sh: the link check failed" >&2
    tail -n 20 "$WORK"/node-l*.log >&2 || true
    exit 1
fi
echo "== broker.sh: ok"
