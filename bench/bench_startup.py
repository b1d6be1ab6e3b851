"""Start-up of the command line: whole-process times beside ``python -c pass``, and imports.

    .venv/bin/python bench/bench_startup.py [--runs 15]

1. Whole process, best and median of ``--runs``: ``python -c pass`` (the ceiling: an
   interpreter that does nothing), ``clearing --help``, ``clearing --version`` (which also
   reads the store's schema version), ``clearing deposit`` of one command into an SQLite
   store (a fresh store for the first run, the same one after), and ``clearing account
   show`` (a read).
2. ``python -X importtime`` of ``--help`` and of one ``deposit``: the total import time and
   the heaviest top-level packages, and whether SQLAlchemy, eventsourcing, pydantic or
   psycopg were imported at all (``--help`` and ``--version`` must import none of them).

Targets (issue 11): ``--help`` under 0.25 s, one ``deposit`` under 0.6 s on this machine
when it is quiet. Nothing is asserted; figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CLEARING = str(ROOT / ".venv" / "bin" / "clearing")
HEAVY = ("sqlalchemy", "eventsourcing", "pydantic", "psycopg")


def run(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return seconds


def importtime(argv: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Total import seconds and cumulative seconds per top-level package (``-X importtime``)."""
    done = subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True, text=True, env=env)
    packages: dict[str, float] = defaultdict(float)
    total = 0.0
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not found:
            continue
        self_us, cumulative_us, indent, name = int(found[1]), int(found[2]), len(found[3]), found[4]
        total += self_us / 1e6
        packages.setdefault("=" + name.split(".")[0], 0.0)  # every package imported, at any depth
        if indent <= 1:  # a top-level import: its cumulative time once
            packages[name.split(".")[0]] += cumulative_us / 1e6
    return total, dict(packages)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        db = str(Path(directory) / "ledger.db")
        env = {**os.environ, "CLEARING_DB": db}
        run([CLEARING, "open-account", "alice", "--at", "2025-01-01T00:00:00Z"], env)
        cases = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "clearing --help": [CLEARING, "--help"],
            "clearing --version": [CLEARING, "--version"],
            "clearing deposit (one command, SQLite)": [CLEARING, "deposit", "alice", "1", "--at", "2025-01-01T00:00:01Z"],
            "clearing account show": [CLEARING, "account", "show", "alice"],
        }
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
              f"{os.getloadavg()[0]:.2f}; {args.runs} runs each (a deposit gets a new id each run)")
        base = 0.0
        for label, argv in cases.items():
            times = []
            for index in range(args.runs):
                call = [*argv, "--id", f"b{index}-{time.time_ns()}"] if "deposit" in label else argv
                times.append(run(call, env))
            best, median = min(times), statistics.median(times)
            base = base or best
            print(f"{label:<40} best {best:.3f} s  median {median:.3f} s  ({best - base:+.3f} s over python -c pass)")
        for label, argv in (("--help", ["-m", "clearing", "--help"]),
                            ("deposit", ["-m", "clearing", "deposit", "alice", "1", "--id", f"imp-{time.time_ns()}",
                                         "--at", "2025-01-01T00:00:02Z"])):
            total, packages = importtime(argv, env)
            heavy = [name for name in HEAVY if "=" + name in packages]
            top = ", ".join(f"{name} {seconds:.3f}" for name, seconds in
                            sorted(packages.items(), key=lambda item: -item[1])[:6] if not name.startswith("="))
            print(f"-X importtime {label}: {total:.3f} s of imports; heaviest: {top}; heavy libraries imported: "
                  f"{', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
