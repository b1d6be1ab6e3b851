"""Nightly kill -9 cycles: posts killed at random moments and re-posted must end like a clean run.

The CI runs 20 cycles on SQLite and 5 on PostgreSQL (tests/e2e/test_kill_harness.py); this
runs as many as asked (default 200) with the same harness (tests/killharness.py) and prints
one line per cycle, then a summary with the first differences of the first failing cycles.

    .venv/bin/python bench/kill_cycles.py --cycles 200 --db sqlite --seed 1
    .venv/bin/python bench/kill_cycles.py --cycles 200 --db postgres --url postgresql://postgres@127.0.0.1:5432/test

Exit status 0 when every cycle ended like the clean run, 1 otherwise. Each store is a fresh
SQLite file in a temporary directory, or a fresh PostgreSQL schema (dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.killharness import PostgresStores, SqliteStores, run_harness  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200, help="kill-and-re-post cycles (default 200)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help="store kind (default sqlite)")
    parser.add_argument("--seed", type=int, default=1, help="picks the stream and every kill (default 1)")
    parser.add_argument("--url", default=os.environ.get("CLEARING_TEST_POSTGRES", DEFAULT_URL),
                        help=f"PostgreSQL server for --db postgres [env CLEARING_TEST_POSTGRES; default {DEFAULT_URL}]")
    parser.add_argument("--max-kills", type=int, default=3, help="most SIGKILLs per cycle (default 3)")
    parser.add_argument("--max-batch", type=int, default=50, help="largest random --batch-size (default 50)")
    args = parser.parse_args()

    def progress(cycle) -> None:
        kills = " ".join(f"{b}@{n}" for b, n, _, _ in cycle.kills)
        verdict = "ok" if not cycle.differences else f"{len(cycle.differences)} difference(s): {cycle.differences[0][:160]}"
        print(f"cycle {cycle.number:>4}  {cycle.seconds:5.1f} s  kills(batch@lines) {kills:<24} final batch "
              f"{cycle.final_batch_size:>3}  {verdict}", flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill-cycles-") as directory:
        stores = SqliteStores(Path(directory)) if args.db == "sqlite" else PostgresStores(args.url)
        report = run_harness(stores, Path(directory), args.cycles, args.seed, args.max_kills, args.max_batch, progress)
    print()
    print(report.summary(limit=3))
    print(f"wall time {time.monotonic() - started:.1f} s")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
