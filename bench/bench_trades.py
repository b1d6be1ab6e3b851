"""Trade throughput on SQLite beside the library's own batch insert of the same events.

    .venv/bin/python bench/bench_trades.py [--trades 100000] [--accounts 1000] [--batch-size 1000]

1. Posts ``--trades`` trade lines (each with a full initial-margin check on both sides)
   through ``clearing.posting.post_lines``, the code path of ``clearing post``: JSON parsing,
   pydantic validation, decisions, one save per batch, results after commit.
2. Reads back the events that run stored and times the eventsourcing library's
   ``recorder.insert_events`` of exactly those stored events, in the same batch sizes, into
   a fresh SQLite file: the storage ceiling.
3. Prints trades/s, events/s, the ratio ours/ceiling, and resident memory while posting
   a second run of trades onto the now larger store (memory must not grow with the log).

Figures go to bench/README.md. Nothing here is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from clearing.application import ClearingApplication
from clearing.posting import post_lines
from clearing.settings import store_env

START = datetime(2025, 1, 1, tzinfo=UTC)


def setup_lines(accounts: int) -> list[str]:
    at = START.isoformat()
    lines = [
        {"type": "create_market", "id": "m", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
         "step_size": "0.001", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03", "at": at},
        {"type": "price", "id": "p0", "market": "BTC-PERP", "price": "50000", "at": at},
    ]
    for index in range(accounts):
        lines.append({"type": "open_account", "id": f"o{index}", "account": f"a{index}", "at": at})
        lines.append({"type": "deposit", "id": f"d{index}", "account": f"a{index}", "amount": "1000000", "at": at})
    return [json.dumps(line) for line in lines]


def trade_lines(count: int, accounts: int, seed: int, prefix: str) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        buyer, seller = rng.sample(range(accounts), 2)
        at = (START + timedelta(milliseconds=index)).isoformat()
        lines.append(json.dumps({
            "type": "trade", "id": f"{prefix}{index}", "market": "BTC-PERP", "buyer": f"a{buyer}",
            "seller": f"a{seller}", "size": f"0.{rng.randint(1, 999):03d}", "price": str(50000 + rng.randint(-500, 500)),
            "at": at}))
    return lines


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def post_all(app: ClearingApplication, lines: list[str], batch_size: int) -> tuple[float, int]:
    started = time.perf_counter()
    rejected = sum(o.status != "applied" for o in post_lines(app, lines, batch_size=batch_size))
    return time.perf_counter() - started, rejected


def ceiling(app: ClearingApplication, first_position: int, events_per_batch: list[int], directory: str) -> float:
    """Time the library's insert_events of the events we stored, same batches, fresh file."""
    stored = [
        StoredEvent(originator_id=n.originator_id, originator_version=n.originator_version, topic=n.topic, state=n.state)
        for n in _notifications(app, first_position, first_position + sum(events_per_batch) - 1)
    ]
    datastore = SQLiteDatastore(db_name=os.path.join(directory, "ceiling.db"))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    started = time.perf_counter()
    offset = 0
    for size in events_per_batch:
        recorder.insert_events(stored[offset:offset + size])
        offset += size
    assert offset == len(stored), (offset, len(stored))
    return time.perf_counter() - started


def _notifications(app: ClearingApplication, start: int, stop: int):
    while True:
        page = app.recorder.select_notifications(start=start, limit=10000, stop=stop)
        if not page:
            return
        yield from page
        start = page[-1].id + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        app = ClearingApplication(env=store_env(os.path.join(directory, "bench.db")))
        post_all(app, setup_lines(args.accounts), args.batch_size)
        first_position = (app.recorder.max_notification_id() or 0) + 1
        lines = trade_lines(args.trades, args.accounts, args.seed, "t")
        rss_series = [rss_mib()]
        seconds, rejected = 0.0, 0
        quarter = -(-len(lines) // 4)
        for start in range(0, len(lines), quarter):  # RSS after each quarter: flat, or growing with the log?
            part_seconds, part_rejected = post_all(app, lines[start:start + quarter], args.batch_size)
            seconds, rejected = seconds + part_seconds, rejected + part_rejected
            rss_series.append(rss_mib())
        events = (app.recorder.max_notification_id() or 0) - first_position + 1

        # A second application on the now larger store: memory must not depend on the log's length.
        second = trade_lines(args.trades // 5, args.accounts, args.seed + 1, "u")
        app2 = ClearingApplication(env=store_env(os.path.join(directory, "bench.db")))
        rss_second_before = rss_mib()
        seconds2, _ = post_all(app2, second, args.batch_size)
        rss_second_after = rss_mib()

        batches = [events * len(chunk) // len(lines) for chunk in _chunks(lines, args.batch_size)]
        batches[-1] += events - sum(batches)
        ceiling_seconds = ceiling(app, first_position, batches, directory)

    applied = args.trades - rejected
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite file in {tempfile.gettempdir()}")
    print(f"trades posted: {args.trades} across {args.accounts} accounts, batch {args.batch_size}, "
          f"{rejected} rejected, {events} events stored ({events / max(applied, 1):.1f} per trade)")
    print(f"ours     : {seconds:7.2f} s  {args.trades / seconds:9.0f} trades/s  {events / seconds:9.0f} events/s")
    print(f"ceiling  : {ceiling_seconds:7.2f} s  {events / ceiling_seconds:9.0f} events/s "
          "(library insert_events of the same stored events, same batches)")
    print(f"ratio    : {ceiling_seconds / seconds:.2f} of the storage ceiling")
    print(f"memory   : RSS before and after each quarter of the run: {' -> '.join(f'{r:.0f}' for r in rss_series)} MiB; "
          f"second app on the larger store posting {len(second)} trades: {rss_second_before:.0f} -> "
          f"{rss_second_after:.0f} MiB ({len(second) / seconds2:.0f} trades/s)")


def _chunks(items: list[str], size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


if __name__ == "__main__":
    main()
