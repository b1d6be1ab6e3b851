"""``clearing post`` as a whole process, beside the library's own ``save()`` in the same run.

    .venv/bin/python bench/bench_post.py [--trades 100000] [--accounts 1000] [--zipf S] [--runs 3]

1. Writes a setup file (a market, its mark, ``--accounts`` accounts with deposits) and a
   trade file (``--trades`` trades, each with the full initial-margin check on both sides;
   buyers and sellers uniform, or Zipf-skewed with ``--zipf S`` over a random id order, the
   shape of TigerBeetle's benchmark), posts the setup, then times ``clearing post TRADES``
   (``--no-sync``, the default for a file) as a subprocess: start-up, parsing, validation,
   deciding, saving. Wall seconds and the child's CPU seconds.
2. The ceiling: the eventsourcing library's ``Application.save()`` of **one plain event per
   trade** (an aggregate event with a size and a price, on ``--accounts`` aggregates) in
   batches of 1,000, into a fresh SQLite file, in this process.
3. ``clearing projections catch-up`` of what was posted (the work ``projections follow``
   does), beside the library's read-and-decode of the same notifications.
4. Start-up: ``clearing --help`` and one ``clearing deposit`` against ``python -c pass``.

Each step runs ``--runs`` times, ours and the ceiling alternating; medians are printed with
the ratios. Nothing is asserted: the machine is shared and noisy (bench/README.md).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_trades import setup_lines
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

CLEARING = str(Path(sys.executable).parent / "clearing")
START = datetime(2025, 1, 1, tzinfo=UTC)


class Plain(Aggregate):
    """The ceiling's aggregate: one event per trade, a size and a price."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.size = Decimal(0)

    @event("Traded")
    def trade(self, size: Decimal, price: Decimal) -> None:
        self.size += size


def chooser(accounts: int, zipf: float | None, rng: random.Random) -> Callable[[], int]:
    """Uniform account numbers, or Zipf(s) ranks mapped through a shuffled id order."""
    if zipf is None:
        return lambda: rng.randrange(accounts)
    weights = [1 / (rank ** zipf) for rank in range(1, accounts + 1)]
    order = list(range(accounts))
    rng.shuffle(order)
    cumulative = list(itertools.accumulate(weights))
    return lambda: order[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]


def trade_lines(count: int, accounts: int, zipf: float | None, seed: int) -> list[str]:
    rng = random.Random(seed)
    pick = chooser(accounts, zipf, rng)
    lines = []
    for index in range(count):
        buyer = pick()
        seller = pick()
        while seller == buyer:
            seller = pick()
        at = (START + timedelta(milliseconds=index + 1)).isoformat()
        lines.append(json.dumps({
            "type": "trade", "id": f"t{index}", "market": "BTC-PERP", "buyer": f"a{buyer}", "seller": f"a{seller}",
            "size": f"0.{rng.randint(1, 999):03d}", "price": str(50000 + rng.randint(-500, 500)), "at": at}))
    return lines


PEAK_RSS_MIB: dict[str, float] = {}  # the last child's peak resident memory, per program name


def timed_child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of a child process, and its stderr's last line.

    Its peak resident memory goes to ``PEAK_RSS_MIB``: the kernel's high-water mark of the
    child's own address space (``VmHWM``), read every 50 ms while it runs. Not ``ru_maxrss``,
    which counts the forked copy of this process before the child's ``exec`` (the bench holds
    the generated trade lines, so a 1,000,000-trade run would report this process's size).
    """
    started = time.perf_counter()
    peak_kib = 0
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            peak_kib = max(peak_kib, _high_water_kib(child.pid))
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read()
    cpu = usage.ru_utime + usage.ru_stime
    PEAK_RSS_MIB[" ".join(args[1:4])] = peak_kib / 1024
    if child.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed: {stderr}")
    return wall, cpu, (stderr.strip().splitlines() or [""])[-1]


def _high_water_kib(pid: int) -> int:
    """``VmHWM`` of a running process in KiB (0 when it is gone or the system has no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def library_save(directory: str, trades: int, accounts: int, batch: int = 1000) -> tuple[float, float]:
    """Wall and CPU seconds of the library's save() of one plain event per trade."""
    db = os.path.join(directory, f"ceiling-{time.monotonic_ns()}.db")
    app: Application = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db})
    aggregates = [Plain(number) for number in range(accounts)]
    for start in range(0, accounts, batch):
        app.save(*aggregates[start:start + batch])
    rng = random.Random(1)
    cpu_before, started = time.process_time(), time.perf_counter()
    for start in range(0, trades, batch):
        touched = []
        for _ in range(min(batch, trades - start)):
            aggregate = aggregates[rng.randrange(accounts)]
            aggregate.trade(Decimal("0.123"), Decimal("50000.1"))
            touched.append(aggregate)
        app.save(*touched)
    result = time.perf_counter() - started, time.process_time() - cpu_before
    app.close()
    return result


def library_read(db: str, start: int) -> float:
    """Seconds of the library's read and decode of the notifications after ``start``."""
    from clearing.application import ClearingApplication
    from clearing.settings import store_env

    app = ClearingApplication(env=store_env(db))
    started = time.perf_counter()
    position = start + 1
    while True:
        page = app.recorder.select_notifications(start=position, limit=10_000)
        if not page:
            break
        for notification in page:
            app.mapper.to_domain_event(notification)
        position = page[-1].id + 1
    app.close()
    return time.perf_counter() - started


def follow_run(directory: str, setup: Path, trades: Path, env: dict[str, str]) -> tuple[float, int, float, float]:
    """Post with ``projections follow`` running beside it: (post seconds, greatest lag seen,
    seconds from the post's end until the projections reached the head, the follower's
    events/s from the post's start to that moment). The lag (head minus the projections'
    least tracked position) is sampled every 0.2 s from this process, which only reads."""
    from clearing.application import ClearingApplication
    from clearing.settings import store_env
    from projections.runner import Projector
    from projections.store import ProjectionStore

    db = os.path.join(directory, "follow.db")
    timed_child([CLEARING, "--db", db, "post", "--sync", str(setup)], env)
    start_head = head_of(db)
    follower = subprocess.Popen([CLEARING, "--db", db, "projections", "follow", "--interval", "0.1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app = ClearingApplication(env=store_env(db))
    store = ProjectionStore(db)
    projector = Projector(app, store)
    lags: list[int] = []
    started = time.perf_counter()
    poster = subprocess.Popen([CLEARING, "--db", db, "post", "--no-sync", str(trades)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    posted = drained = None
    while drained is None:
        time.sleep(0.2)
        head, position = app.recorder.max_notification_id() or 0, projector.position()
        lags.append(head - position)
        now = time.perf_counter() - started
        if posted is None and poster.poll() is not None:
            posted = now
        if posted is not None and position >= head:
            drained = now - posted
    follower.send_signal(2)
    follower.wait(timeout=120)
    store.close()
    app.close()
    return posted or 0.0, max(lags), drained, (head_of(db) - start_head) / (posted + drained)


def head_of(db: str) -> int:
    from clearing.application import ClearingApplication
    from clearing.settings import store_env

    app = ClearingApplication(env=store_env(db))
    head = app.recorder.max_notification_id() or 0
    app.close()
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--zipf", type=float, default=None, help="Zipf exponent of the hot set (e.g. 1.1)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ}
    ours, ceiling, catch_up, reads, heads, logs = [], [], [], [], [], []
    peaks: list[float] = []
    with tempfile.TemporaryDirectory() as directory:
        setup = Path(directory, "setup.jsonl")
        setup.write_text("\n".join(setup_lines(args.accounts)) + "\n")
        trades = Path(directory, "trades.jsonl")
        trades.write_text("\n".join(trade_lines(args.trades, args.accounts, args.zipf, 7)) + "\n")
        for run in range(args.runs):
            db = os.path.join(directory, f"run{run}.db")
            timed_child([CLEARING, "--db", db, "post", str(setup)], env)
            start = head_of(db)
            wall, cpu, summary = timed_child([CLEARING, "--db", db, "post", "--no-sync", str(trades)], env)
            ours.append((wall, cpu))
            peaks.append(PEAK_RSS_MIB[f"--db {db} post"])
            ceiling.append(library_save(directory, args.trades, args.accounts))
            logs.append(head_of(db))
            heads.append(logs[-1] - start)
            catch_up.append(timed_child([CLEARING, "--db", db, "projections", "catch-up"], env)[:2])
            reads.append(library_read(db, 0))
            print(f"run {run + 1}: post {wall:.2f} s wall, {cpu:.2f} s CPU ({summary}); library save "
                  f"{ceiling[-1][0]:.2f} s; catch-up {catch_up[-1][0]:.2f} s; library read {reads[-1]:.2f} s",
                  file=sys.stderr)
        follow = follow_run(directory, setup, trades, env)
        hello = Path(directory, "hello.db")
        timed_child([CLEARING, "--db", str(hello), "open-account", "alice"], env)
        start_pass, start_help, start_deposit = [], [], []
        for _ in range(args.runs):
            start_pass.append(timed_child([sys.executable, "-c", "pass"], env)[0])
            start_help.append(timed_child([CLEARING, "--help"], env)[0])
            start_deposit.append(timed_child([CLEARING, "--db", str(hello), "deposit", "alice", "1"], env)[0])

    def median(values: list[float]) -> float:
        return statistics.median(values)

    post_wall, post_cpu = median([w for w, _ in ours]), median([c for _, c in ours])
    save_wall, save_cpu = median([w for w, _ in ceiling]), median([c for _, c in ceiling])
    shape = f"Zipf s={args.zipf}" if args.zipf else "uniform"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
          f"{os.getloadavg()[0]:.2f}; SQLite; {args.trades} trades among {args.accounts} accounts ({shape}); "
          f"median of {args.runs}")
    print(f"events stored per trade: {median(heads) / args.trades:.2f}")
    print(f"clearing post   : {post_wall:7.2f} s wall {args.trades / post_wall:9.0f} trades/s, {post_cpu:.2f} CPU-s "
          f"({post_cpu / args.trades * 1e6:.0f} us per trade), peak resident memory {max(peaks):.0f} MiB")
    print(f"library save()  : {save_wall:7.2f} s wall {args.trades / save_wall:9.0f} events/s, {save_cpu:.2f} CPU-s "
          "(one plain event per trade, batches of 1,000, in-process)")
    print(f"ratio           : {save_wall / post_wall:.2f} x the library's save (>= 1.0 is the goal)")
    catch_wall = median([w for w, _ in catch_up])
    read_wall = median(reads)
    print(f"projections     : catch-up of the whole log ({median(logs)} events, a process) {catch_wall:.2f} s "
          f"({median(logs) / catch_wall:.0f} events/s); "
          f"library read+decode {read_wall:.2f} s; ratio {read_wall / catch_wall:.2f}")
    print(f"with a follower : post {follow[0]:.2f} s ({args.trades / follow[0]:.0f} trades/s) while `projections follow` "
          f"ran; greatest lag {follow[1]} events; the projections reached the head {follow[2]:.1f} s after the "
          f"post ended; the follower applied {follow[3]:.0f} events/s")
    print(f"start-up        : python -c pass {median(start_pass):.3f} s, clearing --help {median(start_help):.3f} s, "
          f"clearing deposit {median(start_deposit):.3f} s")


if __name__ == "__main__":
    main()
