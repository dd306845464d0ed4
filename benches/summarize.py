#!/usr/bin/env python3
"""Prints a markdown table of `echo` bench results.

    python3 benches/summarize.py                      # the last run, in target/criterion
    python3 benches/summarize.py run1/ run2/ run3/    # copies of target/criterion from several runs

Uses criterion's median time per iteration; one iteration is 1 message in the
c1 groups and 64 messages (one per connection) in the c64 groups. With several
runs, each cell shows the median over the runs, and the last column the
weft / best-peer ratio of that median followed by the lowest and highest
per-run ratio.
"""
import statistics
import json
import os
import sys

IMPLS = ["weft", "tokio-tungstenite", "fastwebsockets", "tokio-websockets"]
BASELINE = "raw-tcp-echo"
MODES = [("c1", 1), ("c64", 64)]
SIZES = [("16B", 16), ("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)]


def median_ns(root, group, name):
    path = os.path.join(root, group, name, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def fmt_rate(msgs, size):
    mib = msgs * size / (1 << 20)
    if msgs >= 1e6:
        m = f"{msgs / 1e6:.2f} M"
    elif msgs >= 1e3:
        m = f"{msgs / 1e3:.1f} k"
    else:
        m = f"{msgs:.0f} "
    return f"{m}msg/s, {mib:,.0f} MiB/s" if mib >= 10 else f"{m}msg/s"


def main():
    roots = sys.argv[1:] or [os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")]
    cols = IMPLS + [BASELINE]
    print("| cell | " + " | ".join(cols) + " | weft / best peer |")
    print("|" + " --- |" * (len(cols) + 2))
    for mode, conns in MODES:
        for size_name, size in SIZES:
            group = f"{mode}_{size_name}"
            runs = []  # per run: {name: msgs/s}
            for root in roots:
                rates = {}
                for name in cols:
                    ns = median_ns(root, group, name)
                    if ns:
                        rates[name] = conns / (ns * 1e-9)
                runs.append(rates)
            rates = {}
            for name in cols:
                vals = [r[name] for r in runs if name in r]
                if vals:
                    rates[name] = statistics.median(vals)
            if not rates:
                continue
            ratio = weft_ratio(rates) or "-"
            if isinstance(ratio, float):
                ratio = f"{ratio:.2f}"
                per_run = [x for x in map(weft_ratio, runs) if x]
                if len(per_run) > 1:
                    ratio += f" ({min(per_run):.2f}-{max(per_run):.2f})"
            cells = [fmt_rate(rates[n], size) if n in rates else "-" for n in cols]
            print(f"| {mode} {size_name} | " + " | ".join(cells) + f" | {ratio} |")


def weft_ratio(rates):
    peers = [rates[p] for p in IMPLS[1:] if p in rates]
    if not peers or "weft" not in rates:
        return None
    return rates["weft"] / max(peers)


if __name__ == "__main__":
    main()
