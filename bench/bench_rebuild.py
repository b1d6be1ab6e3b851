"""Projection rebuild on SQLite beside the library's own read-and-decode of the same log.

    .venv/bin/python bench/bench_rebuild.py [--events 1000000] [--db /tmp/bench_rebuild.db]

1. Builds (or reuses) an SQLite event store of at least ``--events`` events: 3 markets,
   5,000 accounts, trades through ``post_lines`` with a price move every 250 trades and
   business time crossing a day every ~30,000 trades, so end-of-day snapshots happen.
2. Ceiling: the eventsourcing library reading every notification in pages of 5,000
   (``recorder.select_notifications``) and decoding it (``mapper.to_domain_event``).
3. Ours: every read model (margin, insurance_fund, losses, liquidations) built from
   event 1 into a fresh SQLite file (``projections.replay.replay_into``, the code of
   ``projections rebuild`` and ``audit replay``), at a quarter of the log and at all of
   it, each in its own process so its peak memory (ru_maxrss) is its own.
4. ``clearing projections catch-up`` (live projections including the hash chain) and
   ``clearing audit verify`` on the same store, timed as subprocesses.

Prints events/s, ratio ours/ceiling and peak RSS. Nothing is asserted: the machine is
shared and noisy; figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clearing.application import ClearingApplication  # noqa: E402
from clearing.posting import post_lines  # noqa: E402
from clearing.runtime import tune_collector_for_batches  # noqa: E402
from clearing.settings import store_env  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
MARKETS = {"BTC-PERP": (50000, "0.1", "0.001"), "ETH-PERP": (3000, "0.01", "0.01"), "SOL-PERP": (150, "0.001", "0.1")}
ACCOUNTS = 5000


def _setup() -> list[str]:
    at = START.isoformat()
    lines = [{"type": "fund_insurance", "id": "f0", "amount": "1000000", "at": at}]
    for name, (price, tick, step) in MARKETS.items():
        lines.append({"type": "create_market", "id": f"m-{name}", "market": name, "kind": "perpetual", "tick_size": tick,
                      "step_size": step, "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03", "at": at})
        lines.append({"type": "price", "id": f"p-{name}-0", "market": name, "price": str(price), "at": at})
    for index in range(ACCOUNTS):
        lines.append({"type": "open_account", "id": f"o{index}", "account": f"a{index}", "at": at})
        lines.append({"type": "deposit", "id": f"d{index}", "account": f"a{index}", "amount": str(2000 + 50 * (index % 400)),
                      "at": at})
    return [json.dumps(line) for line in lines]


def _trading(start: int, count: int, rng: random.Random, prices: dict[str, float]) -> list[str]:
    lines = []
    for index in range(start, start + count):
        at = (START + timedelta(seconds=3 * index)).isoformat()  # a new day every 28,800 trades
        name = rng.choice(list(MARKETS))
        _, tick, step = MARKETS[name]
        if index % 250 == 0:
            prices[name] *= 1 + rng.uniform(-0.01, 0.0099)
            lines.append(json.dumps({"type": "price", "id": f"p{index}", "market": name,
                                     "price": _on(prices[name], tick), "at": at}))
        buyer, seller = rng.sample(range(ACCOUNTS), 2)
        size = _on(rng.uniform(0.2, 3) * 100 / prices[name] * 10, step)
        lines.append(json.dumps({"type": "trade", "id": f"t{index}", "market": name, "buyer": f"a{buyer}",
                                 "seller": f"a{seller}", "size": size, "price": _on(prices[name], tick), "at": at}))
    return lines


def _on(value: float, quantum: str) -> str:
    """A float of the generator (never of the ledger) rounded onto a quantum, as a string."""
    from decimal import Decimal

    q = Decimal(quantum)
    return format(max(q, (Decimal(repr(value)) / q).quantize(Decimal(1)) * q), "f")


def build(db: str, events: int) -> int:
    app = ClearingApplication(env=store_env(db))
    head = app.recorder.max_notification_id() or 0
    if head >= events:
        return head
    rng = random.Random(7)
    prices = {name: float(spec[0]) for name, spec in MARKETS.items()}
    if head == 0:
        list(post_lines(app, _setup()))
    index = 0
    started = time.perf_counter()
    while (app.recorder.max_notification_id() or 0) < events:
        list(post_lines(app, _trading(index, 20000, rng, prices)))
        index += 20000
        print(f"  built {app.recorder.max_notification_id():,} events ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    return app.recorder.max_notification_id() or 0


def measure_ceiling(db: str, until: int) -> dict:
    tune_collector_for_batches()  # the same process settings as ours (the command line's)
    app = ClearingApplication(env=store_env(db))
    started = time.perf_counter()
    count, start = 0, 0
    to_event = app.mapper.to_domain_event
    while notes := app.recorder.select_notifications(start=start, limit=5000, stop=until, inclusive_of_start=False):
        for note in notes:
            to_event(note)
        count += len(notes)
        start = notes[-1].id
    return {"events": count, "seconds": time.perf_counter() - started, "peak_rss_mib": _peak()}


def measure_rebuild(db: str, until: int) -> dict:
    from projections.replay import replay_into
    from projections.runner import READ_MODELS
    from projections.store import ProjectionStore

    tune_collector_for_batches()  # as `clearing projections rebuild` runs
    app = ClearingApplication(env=store_env(db))
    with tempfile.TemporaryDirectory() as directory:
        target = ProjectionStore(str(Path(directory) / "projections.db"))
        started = time.perf_counter()
        replay_into(app, target, until, list(READ_MODELS))
        seconds = time.perf_counter() - started
    return {"events": until, "seconds": seconds, "peak_rss_mib": _peak()}


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _in_process(kind: str, db: str, until: int) -> dict:
    output = subprocess.run([sys.executable, __file__, f"--measure-{kind}", db, "--until", str(until)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _timed(*args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "clearing"), *args], capture_output=True, text=True)
    return time.perf_counter() - started, (result.stdout + result.stderr).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", default=None)
    parser.add_argument("--until", type=int, default=None)
    parser.add_argument("--measure-ceiling", dest="ceiling", default=None)
    parser.add_argument("--measure-rebuild", dest="rebuild", default=None)
    parser.add_argument("--skip-cli", action="store_true", help="Leave out catch-up and audit verify.")
    args = parser.parse_args()
    if args.ceiling:
        print(json.dumps(measure_ceiling(args.ceiling, args.until)))
        return
    if args.rebuild:
        print(json.dumps(measure_rebuild(args.rebuild, args.until)))
        return
    db = args.db or str(Path(tempfile.gettempdir()) / f"bench_rebuild_{args.events}.db")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite file {db}")
    head = build(db, args.events)
    print(f"log: {head:,} events ({os.path.getsize(db) / 2**20:,.0f} MiB)")
    ceiling_seconds = 0.0
    for until in (head // 4, head):
        ceiling = _in_process("ceiling", db, until)
        ceiling_seconds = ceiling["seconds"]
        ours = _in_process("rebuild", db, until)
        ceiling_rate = ceiling["events"] / ceiling["seconds"]
        our_rate = until / ours["seconds"]
        print(f"{until:>9,} events  read+decode {ceiling_rate:>9,.0f} ev/s ({ceiling['peak_rss_mib']:.0f} MiB peak)  "
              f"rebuild all projections {our_rate:>9,.0f} ev/s ({ours['peak_rss_mib']:.0f} MiB peak)  "
              f"ratio {our_rate / ceiling_rate:.2f}")
    if not args.skip_cli:
        seconds, output = _timed("--db", db, "projections", "catch-up")
        print(f"projections catch-up (live, incl. hash chain): {seconds:.1f}s: {output.splitlines()[-1]}")
        seconds, output = _timed("--db", db, "audit", "verify")
        print(f"audit verify: {seconds:.1f}s, {seconds / ceiling_seconds:.2f} x the library's read-and-decode of "
              f"the whole log in this run ({ceiling_seconds:.1f}s)\n  " + output.replace("\n", "\n  "))


if __name__ == "__main__":
    main()
