#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 10) on its
# committed seed corpus (fuzz/corpus/<target>/seed-*), one job at a time.
# New inputs go to a scratch directory, so the tree is left as it was.
#
# Prints one line per target: `target execs crashes`, and exits non-zero if
# any target crashed (a panic, a failed invariant, a sanitizer report, a
# leak, a timeout or running out of memory). The failing input is kept in
# fuzz/artifacts/<target>/ for `cargo +nightly fuzz run <target> <file>`.
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz if it is missing. FUZZ_TARGETS="a b" runs only those targets.
set -euo pipefail
secs="${1:-10}"
cd "$(dirname "$0")/../fuzz"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked >&2
fi
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
cargo +nightly fuzz build -O >&2
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for t in $targets; do
    mkdir -p "$scratch/$t" "artifacts/$t"
    log="$scratch/$t.log"
    set +e
    # -timeout: a single input taking over 10 s is a hang (linear-time
    # parsers); -rss_limit_mb / -malloc_limit_mb: memory bounds; leaks are
    # reported by LeakSanitizer (on by default with ASan).
    cargo +nightly fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    set -e
    execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)"
    crashes=0
    if [ "$rc" -ne 0 ]; then
        crashes=1
        failed=1
        tail -40 "$log" >&2
    fi
    echo "$t ${execs:-0} $crashes"
done
exit "$failed"
