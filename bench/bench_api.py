"""``clearing serve`` under 8 concurrent clients, beside the same queries run directly.

    .venv/bin/python bench/bench_api.py [--db /tmp/bench_rebuild_1000000.db] [--events 1000000]
        [--clients 8] [--requests 2000] [--report-requests 80] [--workers 1]

1. Builds (or reuses) the store of ``bench_rebuild.py`` (3 markets, 5,000 accounts, a day
   every ~30,000 trades), brings its projections to the head (``clearing projections
   catch-up``) and issues a regulator token (``clearing tokens create``) when none is there.
2. Starts ``clearing serve`` on 127.0.0.1 (a subprocess, access log to /dev/null).
3. Ours: ``--clients`` threads, each with one keep-alive HTTP connection, send a bounded
   number of requests between them: one account (a random account each request), the fund
   history's first page (``/insurance-fund?limit=100&newest_first=true``) and a daily-margin
   report (CSV, the log's last closed day). p50, p99 and requests/s per endpoint.
4. Ceiling, in the same run: the same query called directly on the database in this process
   (``account_view``, ``fund_page``, ``build_report`` + ``render``), one at a time; p50 and
   p99, and the ratio of the API's p50 to it.

The clients share the machine's two cores with the server: the figures are for that. Nothing
is asserted; figures go to bench/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_rebuild import build  # noqa: E402

CLEARING = str(ROOT / ".venv" / "bin" / "clearing")


def clearing(db: str, *args: str) -> str:
    done = subprocess.run([CLEARING, "--db", db, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"clearing {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def load(port: int, token: str, paths: list[str], clients: int) -> tuple[list[float], float, int]:
    """Send ``paths`` from ``clients`` threads (keep-alive); (latencies, wall seconds, failures)."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    queue = list(reversed(paths))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {token}"}
        while True:
            with lock:
                if not queue:
                    break
                path = queue.pop()
            started = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                failures[0] += response.status != 200
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started, failures[0]


def direct(calls: int, function: Any, threads: int = 1) -> list[float]:
    """Latencies of ``calls`` calls of ``function`` in this process, from ``threads`` threads."""
    latencies: list[float] = []
    lock = threading.Lock()
    left = [calls]

    def worker() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            started = time.perf_counter()
            function()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return latencies


def wait_for(port: int, workers: int) -> None:
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0 if workers > 1 else 0)  # every worker up, not only the first


def scenario(name: str, paths: list[str], function: Any, port: int, token: str, clients: int) -> None:
    """One endpoint: the API with ``clients`` clients and with one, the direct call likewise."""
    calls = max(20, len(paths) // 10)
    serial, _, _ = load(port, token, paths[:calls], 1)  # latencies in the order sent: [0] is the first request
    latencies, wall, failures = load(port, token, paths, clients)
    alone = direct(calls, function)
    crowded = direct(len(paths), function, clients)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    c50, c99 = percentile(crowded, 0.5), percentile(crowded, 0.99)
    s50, s99 = percentile(serial, 0.5), percentile(serial, 0.99)
    a50, a99 = percentile(alone, 0.5), percentile(alone, 0.99)
    print(f"{name}:")
    print(f"  API, {clients} clients, {len(paths)} requests: p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
          f"{len(paths) / wall:6.1f} req/s  failures {failures}")
    print(f"  direct, {clients} threads, {len(paths)} calls:   p50 {c50 * 1000:7.1f} ms  p99 {c99 * 1000:7.1f} ms  "
          f"ratio API/direct p50 {p50 / c50:.2f}, p99 {p99 / c99:.2f}")
    print(f"  API, 1 client, {calls} requests:      p50 {s50 * 1000:7.1f} ms  p99 {s99 * 1000:7.1f} ms  "
          f"(the first {serial[0] * 1000:.1f} ms)")
    print(f"  direct, one at a time, {calls} calls: p50 {a50 * 1000:7.1f} ms  p99 {a99 * 1000:7.1f} ms  "
          f"(mean {statistics.fmean(alone) * 1000:.1f} ms)  ratio API/direct p50 {s50 / a50:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="requests per endpoint (the report: --report-requests)")
    parser.add_argument("--report-requests", type=int, default=80)
    parser.add_argument("--workers", type=int, default=1, help="clearing serve --workers")
    args = parser.parse_args()
    db = args.db or f"/tmp/bench_rebuild_{args.events}.db"
    head = build(db, args.events)
    clearing(db, "projections", "catch-up")
    token = json.loads(clearing(db, "tokens", "create", "--name", f"bench-{os.getpid()}", "--role", "regulator",
                                "--json"))["token"]

    from clearing.application import open_application
    from clearing.settings import store_env
    from projections import queries as q
    from projections.read import Views
    from projections.reports.registry import build_report, check_request
    from projections.reports.rendering import render
    from projections.store import ProjectionStore

    app = open_application(store_env(db, read_only=True))
    views = Views(ProjectionStore(db, read_only=True))
    names = q.account_names(views)
    with views.reading() as connection:
        table = views.table("margin", "margin_eod_accounts")
        from sqlalchemy import func, select

        day = connection.execute(select(func.max(table.c.day))).scalar()
    if day is None:  # no closed day yet: the open one
        from projections.charts import log_days

        span = log_days(views)
        day = span.last if span else None
    rng = random.Random(11)
    policies = q.LossPolicies(app)  # read once, as the server's shared one (a fresh one scans the log's parameter events)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.2f}; store {db}: {head:,} events, {len(names):,} accounts; report day {day}; "
          f"clearing serve --workers {args.workers}")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([CLEARING, "--db", db, "serve", "--port", str(port), "--access-log", "/dev/null",
                               "--workers", str(args.workers)],
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(port, args.workers)
        scenarios = {
            "one account": ([f"/api/v1/accounts/{rng.choice(names)}" for _ in range(args.requests)],
                            lambda: q.account_view(views, rng.choice(names), policies)),
            "fund history page 1": (["/api/v1/insurance-fund?limit=100&newest_first=true"] * args.requests,
                                    lambda: q.fund_page(views, None, 0, 100, True)),
            "daily-margin report": ([f"/api/v1/reports/daily-margin?date={day}"] * args.report_requests,
                                    lambda: render(build_report(views, check_request("daily-margin", day)), "csv")),
        }
        load(port, token, [paths[0] for paths, _ in scenarios.values()], 1)  # warm: first imports, caches
        for name, (paths, function) in scenarios.items():
            scenario(name, paths, function, port, token, args.clients)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
