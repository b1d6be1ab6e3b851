"""Scale-out in miniature (ADR 24): two partitions, each a store with its own writer.

    .venv/bin/python bench/bench_partitions.py [--trades 40000]

A ledger of four markets and 1,000 accounts is split by market group: partition ``a``
holds markets M0 and M1 and accounts a0..a499, partition ``b`` M2, M3 and a500..a999 (an
account that cross-margins its markets lives in one partition). First one store takes all
``--trades`` trades with one writer; then the two partitions take the same trades split by
market group, one ``clearing post`` per partition running at once. Then each partition's
projections are caught up, ``audit verify`` runs on each, and ``audit combine`` prints the
digest over both. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pg_writers import CLEARING, MARKETS, setup_lines, trades

GROUPS = {"a": (MARKETS[:2], range(500)), "b": (MARKETS[2:], range(500, 1000))}


def post(db: str, path: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen([CLEARING, "--db", db, "post", *options, str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=40_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        setup = folder / "setup.jsonl"
        setup.write_text("\n".join(setup_lines()) + "\n")
        split = {name: trades(args.trades // 2, markets, accounts, f"t{name}", seed)
                 for seed, (name, (markets, accounts)) in enumerate(GROUPS.items())}
        files = {}
        for name, lines in split.items():
            files[name] = folder / f"{name}.jsonl"
            files[name].write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        everything = folder / "all.jsonl"
        everything.write_text(files["a"].read_text() + files["b"].read_text())

        single = str(folder / "single.db")
        post(single, setup).wait()
        started = time.perf_counter()
        post(single, everything, "--no-sync").wait()
        one_store = time.perf_counter() - started

        stores = {name: str(folder / f"partition-{name}.db") for name in GROUPS}
        for db in stores.values():
            post(db, setup).wait()
        started = time.perf_counter()
        writers = [post(stores[name], files[name], "--no-sync") for name in GROUPS]
        for writer in writers:
            writer.wait()
        two_stores = time.perf_counter() - started

        verified = {}
        for name, db in stores.items():
            subprocess.run([CLEARING, "--db", db, "projections", "catch-up"], capture_output=True, check=True)
            started = time.perf_counter()
            result = subprocess.run([CLEARING, "--db", db, "audit", "verify"], capture_output=True, text=True)
            verified[name] = (result.returncode, time.perf_counter() - started, result.stdout.strip().splitlines()[-1])
        combined = subprocess.run([CLEARING, "audit", "combine", *(f"{name}={db}" for name, db in stores.items())],
                                  capture_output=True, text=True, check=True).stdout.strip().splitlines()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
          f"{os.getloadavg()[0]:.2f}; SQLite; {args.trades} trades, 4 markets, 1,000 accounts")
    print(f"one store, one writer   : {one_store:6.1f} s  {args.trades / one_store:7.0f} trades/s")
    print(f"two partitions at once  : {two_stores:6.1f} s  {args.trades / two_stores:7.0f} trades/s "
          f"({one_store / two_stores:.2f} x one store)")
    for name, (code, seconds, last) in verified.items():
        print(f"audit verify {name}          : exit {code} in {seconds:.1f} s ({last})")
    print("audit combine           : " + " | ".join(combined))


if __name__ == "__main__":
    main()
