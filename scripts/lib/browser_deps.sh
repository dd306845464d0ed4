# Sourced by the browser checks (scripts/interop.sh,
# scripts/broadcast_browser.sh) after scripts/lib/procs.sh: installs what
# they need when missing. The caller defines log and die and sets HELPERS
# (scripts/interop) and LOGS.

# ensure_node_ws: node and npm (apt-get), and ws at the version pinned in
# $HELPERS/package-lock.json (npm ci); sets WS_VERSION.
ensure_node_ws() {
    if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
        log "installing nodejs and npm (apt-get)"
        timeout 300 "${AS_ROOT[@]}" apt-get update -qq
        timeout 600 "${AS_ROOT[@]}" apt-get install -y -qq nodejs npm > "$LOGS/apt-node.log" 2>&1 \
            || { tail -n 20 "$LOGS/apt-node.log" >&2; die "installing nodejs and npm failed"; }
    fi
    WS_VERSION="$(node -p "require('$HELPERS/package-lock.json').packages['node_modules/ws'].version")"
    local installed
    installed="$(node -p "require('$HELPERS/node_modules/ws/package.json').version" 2>/dev/null || true)"
    if [[ "$installed" != "$WS_VERSION" ]]; then
        log "installing ws@$WS_VERSION into scripts/interop/node_modules (npm ci)"
        (cd "$HELPERS" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# ensure_chromium: Debian's chromium (apt-get); sets CHROMIUM to its path.
ensure_chromium() {
    CHROMIUM="$(command -v chromium || true)"
    if [[ -z "$CHROMIUM" ]]; then
        log "installing chromium (apt-get)"
        timeout 300 "${AS_ROOT[@]}" apt-get update -qq
        timeout 900 "${AS_ROOT[@]}" apt-get install -y -qq chromium > "$LOGS/apt-chromium.log" 2>&1 \
            || { tail -n 20 "$LOGS/apt-chromium.log" >&2; die "installing chromium failed"; }
        CHROMIUM="$(command -v chromium)" || die "chromium not found after installing it"
    fi
}
