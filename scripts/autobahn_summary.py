#!/usr/bin/env python3
"""Summarise kosoku (Autobahn TestSuite) reports for scripts/autobahn.sh.

Usage:
    autobahn_summary.py [--exclude PATTERN]... ROLE=REPORT_DIR...

e.g.  autobahn_summary.py --exclude '12.*' --exclude '13.*' \
          server=reports/servers client=reports/clients

Each REPORT_DIR is a kosoku `-o` directory. It holds Autobahn's layout:
`index.json` maps agent -> case id -> {behavior, behaviorClose, reportfile, ...},
and every case has `<agent>_case_<id>.json` / `.html` beside it.

A case passes when both of its verdicts are acceptable, which is also what
kosoku itself checks:
  behavior      in OK, NON-STRICT, INFORMATIONAL
  behaviorClose in OK, INFORMATIONAL
A case whose behavior passes but whose closing handshake does not (WRONG CODE,
UNCLEAN, FAILED, FAILED BY CLIENT) is counted as FAILED.

If kosoku is importable (run this with the venv's python), the list of cases
the run should have covered is rebuilt from kosoku's own case index with the
same include/exclude rules, and any case without a result is reported as
MISSING. (In the fuzzingserver role, a case the client never ran leaves no
result at all.)

Prints one line per role, e.g.
  autobahn server: 301 cases: 298 OK, 2 NON-STRICT, 1 INFORMATIONAL, 0 FAILED
then lists every case that did not pass and every NON-STRICT case.
Exits 0 only if every role has a report with at least one case and every
expected case passed; exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections import Counter
from pathlib import Path

PASS_BEHAVIOR = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}
# Always shown in the count line, in this order; other outcomes (UNIMPLEMENTED,
# ERROR, MISSING, ...) are appended only when they occur.
ALWAYS_SHOWN = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED"]


def sort_key(case_id: str) -> list[int]:
    """Numeric component order: 1.2.10 after 1.2.9."""
    return [int(p) if p.isdigit() else 0 for p in case_id.split(".")]


def matches(pattern: str, case_id: str) -> bool:
    """kosoku's (and Autobahn's) rule: a plain id matches exactly; a pattern
    with `*` is a glob anchored at the start only (`12.*` -> ^12\\..*)."""
    if "*" not in pattern:
        return pattern == case_id
    regex = "^" + pattern.replace(".", r"\.").replace("*", ".*")
    return re.match(regex, case_id) is not None


def expected_cases(excludes: list[str]) -> list[str] | None:
    """Case ids the run should have produced, or None if kosoku is not importable."""
    try:
        from kosoku.cases import CASES  # kosoku's case index: id -> case class
    except Exception as err:  # noqa: BLE001 - any failure just disables the check
        print(f"note: cannot import kosoku's case index ({err}); "
              "missing cases will not be detected", file=sys.stderr)
        return None
    return [c for c in CASES if not any(matches(p, c) for p in excludes)]


def outcome(entry: dict) -> str:
    """One label per case: its behavior, or FAILED if only the close failed."""
    behavior = entry.get("behavior", "?")
    close = entry.get("behaviorClose", "?")
    if behavior in PASS_BEHAVIOR and close not in PASS_CLOSE:
        return "FAILED"
    return behavior


def case_detail(report_dir: Path, entry: dict, explain: bool) -> str:
    """Short description of a verdict; with `explain`, add the case's own
    explanation (from its per-case JSON report) and the HTML report's path."""
    parts = [f"behavior={entry.get('behavior')}", f"close={entry.get('behaviorClose')}"]
    if entry.get("remoteCloseCode") is not None:
        parts.append(f"remoteCloseCode={entry['remoteCloseCode']}")
    reportfile = entry.get("reportfile")
    if not explain:
        return ", ".join(parts)
    text = ""
    if reportfile:
        try:
            case = json.loads((report_dir / reportfile).read_text())
            text = case.get("result") or ""
            close_text = case.get("resultClose") or ""
            if entry.get("behaviorClose") not in PASS_CLOSE and close_text not in ("", text):
                text = f"{text} / {close_text}" if text else close_text
        except (OSError, ValueError):
            pass
    text = " ".join(text.split())
    if len(text) > 140:
        text = text[:137] + "..."
    line = ", ".join(parts)
    if text:
        line += f": {text}"
    if reportfile:
        line += f"  [{report_dir / Path(reportfile).with_suffix('.html').name}]"
    return line


def summarise(role: str, report_dir: Path, expected: list[str] | None) -> bool:
    """Print the role's summary; return True if the role passed."""
    index_path = report_dir / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as err:
        print(f"autobahn {role}: no usable report ({index_path}: {err})")
        return False

    # index.json: {agent: {case_id: entry}}. Normally one agent per role.
    entries: list[tuple[str, dict]] = []
    for cases in index.values():
        entries.extend(cases.items())
    agents = ", ".join(sorted(index)) or "none"

    counts: Counter[str] = Counter()
    failing: list[tuple[str, str, str]] = []  # (case id, label, detail)
    non_strict: list[tuple[str, str]] = []  # (case id, detail)
    seen: set[str] = set()
    for case_id, entry in sorted(entries, key=lambda e: sort_key(e[0])):
        seen.add(case_id)
        label = outcome(entry)
        counts[label] += 1
        if label not in PASS_BEHAVIOR:
            failing.append((case_id, label, case_detail(report_dir, entry, explain=True)))
        elif label == "NON-STRICT":
            non_strict.append((case_id, case_detail(report_dir, entry, explain=False)))

    missing = [c for c in expected or [] if c not in seen]
    if missing:
        counts["MISSING"] += len(missing)

    total = sum(counts.values())
    shown = ALWAYS_SHOWN + sorted(k for k in counts if k not in ALWAYS_SHOWN)
    print(f"autobahn {role}: {total} cases: "
          + ", ".join(f"{counts[k]} {k}" for k in shown)
          + f"  (agent: {agents}; report: {report_dir}/index.html)")
    if failing or missing:
        print(f"  not passing ({len(failing) + len(missing)}):")
        for case_id, label, detail in failing:
            print(f"    {case_id:<9} {label:<13} {detail}")
    if missing:
        # Usually a run that stopped early: one compact list, not a line each.
        print(textwrap.fill(" ".join(missing), width=100,
                            initial_indent=f"    MISSING (no result, {len(missing)}): ",
                            subsequent_indent="      "))
    if non_strict:
        print(f"  non-strict ({len(non_strict)}):")
        for case_id, detail in non_strict:
            print(f"    {case_id:<9} {detail}")

    if len(seen) == 0:
        print(f"autobahn {role}: zero cases ran")
        return False
    return not failing and not missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help="case id or glob that was excluded from the run (repeatable)")
    parser.add_argument("roles", nargs="+", metavar="ROLE=REPORT_DIR")
    args = parser.parse_args()

    expected = expected_cases(args.exclude)
    ok = True
    for spec in args.roles:
        role, sep, directory = spec.partition("=")
        if not sep:
            parser.error(f"expected ROLE=REPORT_DIR, got {spec!r}")
        ok = summarise(role, Path(directory), expected) and ok

    excluded = " ".join(args.exclude) or "none"
    verdict = "PASS" if ok else "FAIL"
    print(f"autobahn: {verdict} (pass = every case OK, NON-STRICT or INFORMATIONAL "
          f"with an acceptable close; excluded: {excluded})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
