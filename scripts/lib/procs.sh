# Sourced by the check scripts: background processes, each the leader of its
# own process group (setsid), so stopping one also stops its children
# (Chromium's helpers); all are stopped on exit. The caller sets
# STOP_TIMEOUT (seconds a group gets after SIGTERM) and may set TMP_DIR
# (removed on exit). Also AS_ROOT, the prefix for commands that need root.

AS_ROOT=(env DEBIAN_FRONTEND=noninteractive)
((EUID == 0)) || AS_ROOT=(sudo -n "${AS_ROOT[@]}")

BG_PIDS=()
TMP_DIR=""

# stop PID: SIGTERM to its group, wait up to STOP_TIMEOUT, then SIGKILL;
# reap it and drop it from BG_PIDS.
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

# spawn LOGFILE CMD...: start CMD in the background in its own process group,
# output to LOGFILE; sets SPAWNED to its pid.
SPAWNED=""
spawn() {
    local logfile=$1
    shift
    setsid "$@" > "$logfile" 2>&1 < /dev/null &
    SPAWNED=$!
    BG_PIDS+=("$SPAWNED")
}
