"""Risk sweep per price update: 10,000 vs 100,000 open positions, the same 100 crossing.

    .venv/bin/python bench/bench_risk_sweep.py [--sizes 10000,100000] [--crossing 100] [--repeats 21]

For each population size N, on a fresh SQLite store:

1. N accounts each buy 0.01 BTC-PERP at 50,000 from one maker (IMF 5 %, MMF 3 %). The
   first ``--crossing`` accounts deposit 26 (liquidation price 48,866), the others 400 to
   1,000 (liquidation prices below 41,000).
2. ``cold``: the first price update after the trades, which builds the liquidation-price
   index from the market's holders.
3. ``quiet``: ``--repeats`` price updates of one tick that cross nobody (median).
4. ``crossing``: one update to 48,800 that makes exactly the weak accounts liquidatable;
   they are called and liquidated to the backstop in that one command.
5. ``ceiling``: the library's own ``insert_events`` of exactly the events the crossing
   update stored, into a fresh SQLite file (the storage floor of that command).

Each price update goes through ``post_lines`` (the path of ``clearing post``): parse,
validate, decide, one transaction, results after commit. Prints the times, the ratio of
the crossing update at the largest to the smallest N (target < 2: the work follows the
crossing accounts, not the population) and the quiet update at the largest N (target
< 5 ms). Nothing is asserted: the machine is shared and noisy. Figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
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


def population(size: int, crossing: int) -> list[str]:
    at = START.isoformat()
    rng = random.Random(size)
    lines = [
        {"type": "create_market", "id": "m", "market": "BTC-PERP", "kind": "perpetual", "tick_size": "0.1",
         "step_size": "0.001", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03", "at": at},
        {"type": "price", "id": "p0", "market": "BTC-PERP", "price": "50000", "at": at},
        {"type": "open_account", "id": "o-maker", "account": "maker", "at": at},
        {"type": "deposit", "id": "d-maker", "account": "maker", "amount": str(100 * size), "at": at},
        # the liquidator of last resort carries what it takes (ADR 13): 1,000,000 holds 1,000,000 of
        # notional at liquidator_position_cap 1, twenty times the crossing accounts' 0.01 BTC each
        {"type": "open_account", "id": "o-backstop", "account": "backstop", "at": at},
        {"type": "deposit", "id": "d-backstop", "account": "backstop", "amount": "1000000", "at": at},
    ]
    for index in range(size):
        name = f"a{index}"
        deposit = "26" if index < crossing else str(rng.randint(400, 1000))
        lines.append({"type": "open_account", "id": f"o{index}", "account": name, "at": at})
        lines.append({"type": "deposit", "id": f"d{index}", "account": name, "amount": deposit, "at": at})
        lines.append({"type": "trade", "id": f"t{index}", "market": "BTC-PERP", "buyer": name, "seller": "maker",
                      "size": "0.01", "price": "50000", "at": at})
    return [json.dumps(line) for line in lines]


def timed_price(app: ClearingApplication, command_id: str, price: str, at: datetime) -> tuple[float, str]:
    line = json.dumps({"type": "price", "id": command_id, "market": "BTC-PERP", "price": price, "at": at.isoformat()})
    started = time.perf_counter()
    (outcome,) = post_lines(app, [line], batch_size=1)
    elapsed = time.perf_counter() - started
    assert outcome.status == "applied", (outcome.code, outcome.message)
    return elapsed, outcome.summary


def ceiling(app: ClearingApplication, first: int, last: int, directory: str) -> float:
    """The library's insert_events of the stored events first..last into a fresh file."""
    page = app.recorder.select_notifications(start=first, limit=last - first + 1, stop=last)
    stored = [StoredEvent(originator_id=n.originator_id, originator_version=n.originator_version, topic=n.topic,
                          state=n.state) for n in page]
    recorder = SQLiteApplicationRecorder(SQLiteDatastore(db_name=os.path.join(directory, "ceiling.db")))
    recorder.create_table()
    started = time.perf_counter()
    recorder.insert_events(stored)
    return time.perf_counter() - started


def run(size: int, crossing: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        app = ClearingApplication(env=store_env(os.path.join(directory, "risk.db")))
        started = time.perf_counter()
        outcomes = list(post_lines(app, population(size, crossing), batch_size=1000))
        setup_seconds = time.perf_counter() - started
        assert all(o.status == "applied" for o in outcomes), [o.message for o in outcomes if o.status != "applied"][:3]
        at = START + timedelta(minutes=1)
        cold, _ = timed_price(app, "cold", "50000.1", at)
        quiet = []
        for n in range(repeats):
            at += timedelta(seconds=1)
            elapsed, summary = timed_price(app, f"q{n}", "50000.2" if n % 2 == 0 else "50000.1", at)
            quiet.append(elapsed)
        head = app.recorder.max_notification_id()
        at += timedelta(seconds=1)
        crossing_seconds, summary = timed_price(app, "cross", "48800", at)
        last = app.recorder.max_notification_id()
        liquidated = sum(1 for n in app.recorder.select_notifications(start=head + 1, limit=last - head)
                         if n.topic.endswith("Account.Liquidated"))
        floor = ceiling(app, head + 1, last, directory)
    return {"size": size, "setup": setup_seconds, "cold": cold, "quiet": statistics.median(quiet),
            "quiet_max": max(quiet), "crossing": crossing_seconds, "events": last - head, "liquidated": liquidated,
            "ceiling": floor, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="Population sizes, comma-separated.")
    parser.add_argument("--crossing", type=int, default=100, help="Accounts the move makes liquidatable.")
    parser.add_argument("--repeats", type=int, default=21, help="Quiet price updates to time per size.")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, SQLite file store")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = run(size, args.crossing, args.repeats)
        results.append(result)
        print(f"N={size:>7}: setup {result['setup']:6.1f} s | cold (index build) {result['cold'] * 1000:8.1f} ms | "
              f"quiet median {result['quiet'] * 1000:6.2f} ms (max {result['quiet_max'] * 1000:6.2f}) | "
              f"crossing {result['crossing'] * 1000:7.1f} ms ({result['liquidated']} liquidated, {result['events']} events; "
              f"library insert of those events {result['ceiling'] * 1000:6.1f} ms, "
              f"ratio {result['ceiling'] / result['crossing']:.2f})",
              flush=True)
    small, large = results[0], results[-1]
    print(f"crossing ratio N={large['size']} / N={small['size']}: {large['crossing'] / small['crossing']:.2f} (target < 2)")
    print(f"quiet update at N={large['size']}: {large['quiet'] * 1000:.2f} ms median (target < 5 ms)")


if __name__ == "__main__":
    main()
