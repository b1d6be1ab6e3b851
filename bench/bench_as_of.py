"""``--as-of`` on a long log: from a checkpoint, beside the live query and a replay from 1.

    .venv/bin/python bench/bench_as_of.py [--db /tmp/bench_rebuild_1000000.db] [--events 1000000]
        [--from-start]

1. Builds (or reuses) the store of ``bench_rebuild.py`` (3 markets, 5,000 accounts, a day
   every 28,800 trades) and brings its projections up to the head with ``clearing
   projections catch-up`` (timed; this is where the margin projection writes its
   checkpoints, ``projections/checkpoints.py``).
2. Ceilings, in the same run: the live query (``clearing account show A --json``, no
   replay) and the library's own read-and-decode of the tail a seeded replay applies
   (``select_notifications`` + ``to_domain_event`` of the same positions).
3. Ours, each as a whole process as an operator runs it: ``account show A --as-of P`` for a
   position just before a checkpoint (the longest tail), just after one (the shortest),
   and the middle of the log; ``--as-of TIME`` (the time of the middle position: binary
   search on the watermark, then the scan); ``market show`` and ``adl rank`` as of the
   middle; ``insurance-fund show --as-of`` (a filter of stored rows).
4. With ``--from-start``: the same middle cut replayed from position 1 (the code before
   checkpoints), once.
5. Store bytes of the checkpoint tables beside the whole file.

Prints seconds and ratios. Nothing is asserted: the machine is shared; figures go to
bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_rebuild import build  # noqa: E402

from clearing.application import ClearingApplication  # noqa: E402
from clearing.settings import store_env  # noqa: E402
from projections import checkpoints  # noqa: E402

CLEARING = str(ROOT / ".venv" / "bin" / "clearing")


def timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([CLEARING, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"clearing {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds, done.stdout


def best_of(runs: int, *args: str) -> float:
    return min(timed(*args)[0] for _ in range(runs))


def read_and_decode(app: ClearingApplication, start: int, stop: int) -> float:
    """The library's read and decode of positions ``start``..``stop``: a replay's floor."""
    to_event = app.mapper.to_domain_event
    started = time.perf_counter()
    position = start - 1
    while notes := app.recorder.select_notifications(start=position, limit=5000, stop=stop, inclusive_of_start=False):
        for note in notes:
            to_event(note)
        position = notes[-1].id
    return time.perf_counter() - started


def time_near(app: ClearingApplication, position: int) -> datetime:
    """The business time of the first event at or after ``position`` that has one."""
    for note in app.recorder.select_notifications(start=position, limit=100):
        at = getattr(app.mapper.to_domain_event(note), "at", None)
        if at is not None:
            return at.astimezone(UTC)
    raise SystemExit(f"no business time near position {position}")


def checkpoint_bytes(db: str) -> tuple[int, int]:
    with sqlite3.connect(db) as connection:
        try:
            rows = connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            return 0, os.path.getsize(db)
    ours = sum(size for name, size in rows if name.startswith(("margin_cp_", "margin_checkpoints",
                                                               "sqlite_autoindex_margin_cp_",
                                                               "sqlite_autoindex_margin_checkpoints")))
    return ours, sum(size for _, size in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", default=None)
    parser.add_argument("--runs", type=int, default=3, help="best of N for each timed command")
    parser.add_argument("--from-start", action="store_true", help="also replay the middle cut from position 1")
    args = parser.parse_args()
    db = args.db or str(Path(tempfile.gettempdir()) / f"bench_rebuild_{args.events}.db")
    head = build(db, args.events)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
          f"{os.getloadavg()[0]:.2f}; store {db}: {head:,} events, checkpoint every {checkpoints.EVERY:,} positions")
    seconds, _ = timed("--db", db, "projections", "catch-up")
    print(f"projections catch-up to the head: {seconds:.1f} s")
    app = ClearingApplication(env=store_env(db, read_only=True))
    account = "a17"
    live = best_of(args.runs, "--db", db, "account", "show", account, "--json")
    print(f"ceiling: live `account show {account} --json` (no replay): {live:.2f} s")
    last = (head // checkpoints.EVERY) * checkpoints.EVERY
    middle = (head // 2 // checkpoints.EVERY) * checkpoints.EVERY + checkpoints.EVERY // 2
    cuts = {"just before a checkpoint (longest tail)": last - 1, "just after a checkpoint": last + 1,
            "middle of the log": middle}
    for label, cut in cuts.items():
        tail_start = (cut // checkpoints.EVERY) * checkpoints.EVERY + 1
        floor = read_and_decode(app, tail_start, cut)
        ours = best_of(args.runs, "--db", db, "account", "show", account, "--as-of", str(cut), "--json")
        print(f"account show --as-of {cut:,} ({label}; tail {cut - tail_start + 1:,} positions): {ours:.2f} s; "
              f"library read+decode of the tail {floor:.2f} s; x live {ours / live:.1f}")
    moment = time_near(app, middle)
    ours = best_of(args.runs, "--db", db, "account", "show", account, "--as-of", moment.isoformat(), "--json")
    print(f"account show --as-of {moment.isoformat()} (a time, about the middle): {ours:.2f} s; x live {ours / live:.1f}")
    for name, command in (("market show", ("market", "show", "BTC-PERP")), ("adl rank", ("adl", "rank", "BTC-PERP")),
                          ("insurance-fund show", ("insurance-fund", "show"))):
        ours = best_of(args.runs, "--db", db, *command, "--as-of", str(middle), "--json")
        print(f"{name} --as-of {middle:,}: {ours:.2f} s")
    if args.from_start:
        from projections.replay import replay_views

        started = time.perf_counter()
        replay_views(app, middle, ["margin"])
        print(f"before checkpoints: the margin projection replayed from position 1 to {middle:,}: "
              f"{time.perf_counter() - started:.1f} s (in process)")
    ours_bytes, total = checkpoint_bytes(db)
    print(f"store: {total:,} bytes; checkpoint tables and their indexes {ours_bytes:,} ({100 * ours_bytes / total:.1f}%), "
          f"{ours_bytes / max(1, head // checkpoints.EVERY):,.0f} bytes a checkpoint")


if __name__ == "__main__":
    main()
