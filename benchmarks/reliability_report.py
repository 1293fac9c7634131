"""Rerun the reliability suite and print the fault table of RELIABILITY.md.

    python benchmarks/reliability_report.py            # the whole suite (about a minute on 2 cores)
    python benchmarks/reliability_report.py -k faults  # only the fault campaign (pytest's -k)

The fault tests count every fault the embedded servers injected (their ``fault_counts``) and every run,
re-run and token renewal, per operation; the suite writes that tally to a JSON file named by
``GLITCHRUN_RELIABILITY_TALLY`` (tests/reliability/conftest.py), which this script reads back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULT_KINDS = ("error", "error_after_commit", "drop", "lost_upload", "latency")
HEADINGS = {"error": "503", "error_after_commit": "503 after commit", "drop": "dropped connection",
            "lost_upload": "lost upload", "latency": "delayed (latency)"}
RUN_KEYS = ("token renewals", "runs", "failed runs, resumed")


def table(tally: dict[str, dict[str, int]]) -> list[str]:
    """Markdown rows: one per operation, then the totals; injected = every fault kind but latency."""
    columns = [*FAULT_KINDS, *RUN_KEYS]
    lines = ["| operation | " + " | ".join(HEADINGS.get(c, c) for c in columns) + " | injected, survived |",
             "|---|" + "---:|" * (len(columns) + 1)]
    totals = dict.fromkeys(columns, 0)
    for operation, counts in tally.items():
        injected = sum(counts.get(kind, 0) for kind in FAULT_KINDS if kind != "latency")
        lines.append(f"| {operation} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + f" | {injected} |")
        for column in columns:
            totals[column] += counts.get(column, 0)
    injected = sum(totals[kind] for kind in FAULT_KINDS if kind != "latency")
    lines.append("| **all** | " + " | ".join(f"**{totals[c]}**" for c in columns) + f" | **{injected}** |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default=None, help="pytest -k expression (default: the whole suite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tally_path = Path(scratch) / "tally.json"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "reliability")]
        if args.k:
            command += ["-k", args.k]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              env=os.environ | {"GLITCHRUN_RELIABILITY_TALLY": str(tally_path)})
        summary = [line for line in done.stdout.splitlines() if re.match(r"FAILED |\d+ (passed|failed)", line)]
        tally = json.loads(tally_path.read_text()) if tally_path.exists() else {}
    print("\n".join(table(tally)) if tally else "(no fault test ran)")
    print()
    print("\n".join(summary))
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
