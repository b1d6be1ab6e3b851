"""PostgreSQL writers: one, four on disjoint markets, eight on shared accounts.

    .venv/bin/python bench/bench_pg_writers.py [--url postgresql://postgres@127.0.0.1:5432/test] [--trades 20000]

Each scenario gets a fresh schema. The setup (four markets, 1,000 accounts with deposits) is
posted first; then ``clearing post --no-sync`` processes run at once, each on its own file:

* ``one``: one writer posts ``--trades`` trades in one market among all accounts;
* ``disjoint``: four writers, each ``--trades`` / 4 trades in its own market among its own
  250 accounts (writers routed by market);
* ``shared``: eight writers, each ``--trades`` / 8 trades across the four markets among all
  1,000 accounts (every batch collides with the others);
* ``samemarket``: four writers, each ``--trades`` / 4 trades in the one market ``M0`` among
  its own 250 accounts, every account already holding a position there (set up first): batches
  that change no holder write nothing on the market (ADR 26), so the writers share only the
  table lock;
* ``prices``: the four ``disjoint`` writers and a fifth posting ``--trades`` / 100 marks
  across the four markets, one batch each (an oracle feed): every price batch must commit on a
  store no other writer touched since it began (ADR 12), so it is refused and serialised.

Printed per scenario: wall seconds until the last writer ends, trades/s, the ratio to one
writer, the events the writers wrote on the markets, how busy the machine's cores were while
they ran (all processes, the server's included), and the checks: every command applied
(``retries_exhausted`` counted), positions netting to zero in every market, money conserved (the
invariants' fold), and each account's number of fills equal to the number of posted trades
naming it. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLEARING = str(Path(sys.executable).parent / "clearing")
MARKETS = ("M0", "M1", "M2", "M3")
ACCOUNTS = 1000
START = datetime(2025, 1, 1, tzinfo=UTC)


def setup_lines(holders: bool = False) -> list[str]:
    """Markets, marks, accounts and deposits; with ``holders`` every account also opens a
    position in ``M0`` (a(2k) buys 0.001 from a(2k+1))."""
    at = START.isoformat()
    lines = []
    for market in MARKETS:
        lines.append({"type": "create_market", "id": f"m-{market}", "market": market, "kind": "perpetual",
                      "tick_size": "0.1", "step_size": "0.001", "initial_margin_fraction": "0.05",
                      "maintenance_margin_fraction": "0.03", "at": at})
        lines.append({"type": "price", "id": f"p-{market}", "market": market, "price": "50000", "at": at})
    for index in range(ACCOUNTS):
        lines.append({"type": "open_account", "id": f"o{index}", "account": f"a{index}", "at": at})
        lines.append({"type": "deposit", "id": f"d{index}", "account": f"a{index}", "amount": "100000000", "at": at})
    for index in range(0, ACCOUNTS if holders else 0, 2):
        lines.append({"type": "trade", "id": f"h{index}", "market": "M0", "buyer": f"a{index}", "seller": f"a{index + 1}",
                      "size": "0.001", "price": "50000", "at": at})
    return [json.dumps(line) for line in lines]


def trades(count: int, markets: tuple[str, ...], accounts: range, tag: str, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    found = []
    for index in range(count):
        buyer, seller = rng.sample(accounts, 2)
        at = (START + timedelta(seconds=1, microseconds=index)).isoformat()
        found.append({"type": "trade", "id": f"{tag}-{index}", "market": rng.choice(markets), "buyer": f"a{buyer}",
                      "seller": f"a{seller}", "size": f"0.{rng.randint(1, 999):03d}",
                      "price": str(50000 + rng.randint(-50, 50)), "at": at})
    return found


def prices(count: int, seed: int) -> list[dict[str, str]]:
    """An oracle feed: ``count`` marks over the four markets, each its own batch when posted."""
    rng = random.Random(seed)
    return [{"type": "price", "id": f"px-{index}", "market": MARKETS[index % len(MARKETS)],
             "price": str(50000 + rng.randint(-20, 20)),
             "at": (START + timedelta(seconds=1, microseconds=index)).isoformat()} for index in range(count)]


def scenario(name: str, total: int) -> list[list[dict[str, str]]]:
    if name == "prices":  # four writers on disjoint markets and a fifth posting marks into all of them
        share = ACCOUNTS // len(MARKETS)
        return [*(trades(total // 4, (market,), range(n * share, (n + 1) * share), f"w{n}", n)
                  for n, market in enumerate(MARKETS)), prices(max(1, total // 100), 99)]
    if name == "samemarket":  # four writers in one market, each among its own accounts
        share = ACCOUNTS // 4
        return [trades(total // 4, ("M0",), range(n * share, (n + 1) * share), f"q{n}", 20 + n) for n in range(4)]
    if name == "one":
        return [trades(total, ("M0",), range(ACCOUNTS), "one", 1)]
    if name == "disjoint":
        share = ACCOUNTS // len(MARKETS)
        return [trades(total // 4, (market,), range(n * share, (n + 1) * share), f"w{n}", n)
                for n, market in enumerate(MARKETS)]
    return [trades(total // 8, MARKETS, range(ACCOUNTS), f"s{n}", 10 + n) for n in range(8)]


def run(url: str, name: str, total: int, directory: str) -> dict[str, object]:
    import psycopg

    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    db = f"{url}{'&' if '?' in url else '?'}schema={schema}"
    try:
        setup = Path(directory, "setup.jsonl")
        setup.write_text("\n".join(setup_lines(holders=name == "samemarket")) + "\n")
        subprocess.run([CLEARING, "--db", db, "post", str(setup)], check=True, capture_output=True)
        files = []
        for number, lines in enumerate(scenario(name, total)):
            path = Path(directory, f"{name}-{number}.jsonl")
            path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
            files.append((path, lines))
        versions_before = market_versions(db)
        cpu_before = machine_cpu()
        started = time.perf_counter()
        # each writer's results go to a file of its own, as an operator would redirect them: read
        # through pipes one after another, a writer blocks on its full pipe until the bench
        # reaches it (the figures before 2026-12-03's ADR 26 run were held back by exactly that)
        results = [path.with_suffix(".results") for path, _ in files]
        processes = []
        for (path, lines), result_path in zip(files, results, strict=True):
            with result_path.open("w") as sink:
                processes.append(subprocess.Popen(
                    [CLEARING, "--db", db, "post", "--no-sync", "--json",
                     *(["--batch-size", "1"] if lines[0]["type"] == "price" else []), str(path)],
                    stdout=sink, stderr=subprocess.DEVNULL))
        for process in processes:
            process.wait()
        wall = time.perf_counter() - started
        busy = busy_share(cpu_before, machine_cpu())
        statuses: Counter[str] = Counter()
        for result_path in results:
            for line in result_path.read_text().splitlines():
                result = json.loads(line)
                statuses[result.get("code") or result["status"]] += 1
        setup_trades = [json.loads(line) for line in setup.read_text().splitlines() if '"trade"' in line]
        return {"wall": wall, "trades": sum(len(lines) for _, lines in files if lines[0]["type"] == "trade"),
                "statuses": statuses, "market_events": market_versions(db) - versions_before, "busy": busy,
                "checks": check(db, setup_trades + [line for _, lines in files for line in lines])}
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def machine_cpu() -> tuple[int, int] | None:
    """(busy, idle) jiffies of the whole machine from ``/proc/stat`` (None where there is none)."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq = fields
    return user + nice + system + irq + softirq, idle + iowait


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """How busy every core was while the writers ran (writers and server together): a share
    near 100 % means the scenario is bound by this machine's CPUs, not by contention."""
    if before is None or after is None:
        return "n/a"
    busy, idle = after[0] - before[0], after[1] - before[1]
    return f"{100 * busy / max(busy + idle, 1):.0f} %"


def market_versions(db: str) -> int:
    """The markets' versions summed: their difference over a run counts the events the writers
    wrote on the markets (``HoldersChanged``, and the marks of ``prices``)."""
    from clearing.application import ClearingApplication
    from clearing.settings import store_env

    app = ClearingApplication(env=store_env(db))
    try:
        return sum(app.get_market(market).version for market in MARKETS)
    finally:
        app.close()


def check(db: str, posted: list[dict[str, str]]) -> str:
    """Positions net to zero per market, money conserved, fills per account as posted."""
    from clearing.application import ClearingApplication
    from clearing.audit.invariants import check_ledger
    from clearing.settings import store_env

    app = ClearingApplication(env=store_env(db))
    try:
        check_ledger(app)  # money conserved over every account, and the other invariants
        net = {market: sum((app.get_account(f"a{n}").position(market).size for n in range(ACCOUNTS)), Decimal(0))
               for market in MARKETS}
        expected: Counter[str] = Counter()
        for line in posted:
            if line["type"] != "trade":
                continue
            expected[line["buyer"]] += 1
            expected[line["seller"]] += 1
        fills: Counter[str] = Counter()
        position = 1
        while True:
            page = app.recorder.select_notifications(start=position, limit=10_000)
            if not page:
                break
            for notification in page:
                if notification.topic.endswith(":Account.TradeFilled"):
                    fills[app.mapper.to_domain_event(notification).account] += 1
                elif notification.topic.endswith(":Account.FillsRecorded"):  # a run's fills of one account (ADR 25)
                    event = app.mapper.to_domain_event(notification)
                    fills[event.account] += len(event.fills)
            position = page[-1].id + 1
    finally:
        app.close()
    netted = all(size == 0 for size in net.values())
    return (f"invariants ok; positions net to zero: {netted}; fills per account as posted: {fills == expected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CLEARING_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--scenarios", default="one,disjoint,shared,samemarket,prices")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
          f"{os.getloadavg()[0]:.2f}; PostgreSQL at {args.url.split('@')[-1]}; {args.trades} trades per scenario")
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.scenarios.split(","):
            results[name] = result = run(args.url, name, args.trades, directory)
            rate = result["trades"] / result["wall"]  # type: ignore[operator]
            ratio = f", {rate / (results['one']['trades'] / results['one']['wall']):.2f} x one writer" if "one" in results else ""  # type: ignore[operator]
            print(f"{name:<10}: {result['wall']:.1f} s, {rate:.0f} trades/s{ratio}; outcomes {dict(result['statuses'])}; "
                  f"market events {result['market_events']}; CPUs busy {result['busy']}; {result['checks']}", flush=True)


if __name__ == "__main__":
    main()
