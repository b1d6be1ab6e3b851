"""Kill -9 harness: a post killed at random moments and re-posted ends exactly like a clean run.

Reusable core of ``tests/e2e/test_kill_harness.py`` and ``bench/kill_cycles.py``:

* :func:`generate_stream` builds a seeded, realistic JSON Lines stream **with rejections**
  (markets, accounts, deposits, trades some of which fail initial margin, withdrawals some too
  large, moving prices some outside the band, funding, a dated future settled after expiry,
  duplicate ids with the same and with other content, unknown accounts), every line with an
  explicit, increasing ``at`` (one second apart from 2025-10-10T00:00:00Z).
* :func:`post` / :func:`killed_post` run ``clearing post`` as a subprocess; the killed one
  reads a seeded number of result lines, waits a seeded few milliseconds and sends SIGKILL
  (so the kill lands while a batch is being decided, saved or projected).
* :func:`capture` opens a store in-process and reads what must not depend on how the stream
  was cut into batches or interrupted; :func:`compare` lists the differences precisely.

What legitimately differs between two runs and is left out of the comparison: the library's
timestamps (events and aggregates), notification positions (PostgreSQL leaves gaps), the
batch-level ``Market.HoldersChanged`` events (one per market whose holders a batch changed;
``Market.TradingRecorded`` before ADR 26) and therefore markets' version numbers (also recorded
in each fill as ``market_version``), and the order of a market's ``holders`` (an ordered set
that the engine always reads sorted). Everything else is compared: every other event in log
order by (originator id, topic, version for non-market aggregates, stored state without
timestamp), the final state of every aggregate (accounts, markets, the insurance fund, the
clearinghouse), and each line's final outcome (``applied`` = ``already_applied``; ``rejected`` =
``already_rejected`` with the same code and field).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

CLEARING = str(Path(sys.executable).parent / "clearing")
T0 = datetime(2025, 10, 10, tzinfo=UTC)
MARKETS = ("BTC-PERP", "ETH-PERP", "ETH-FUT")
EXPIRY_SECONDS = 360  # ETH-FUT expires T0 + 6 min; the stream settles it after that
TIMEOUT = 300


# -- the stream ------------------------------------------------------------------------------


class _Stream:
    """Builds commands with increasing ``at`` and a rough model of prices and balances."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.commands: list[dict[str, Any]] = []
        self.seconds = 0
        self.marks: dict[str, Decimal] = {}
        self.ticks = {"BTC-PERP": Decimal("0.1"), "ETH-PERP": Decimal("0.01"), "ETH-FUT": Decimal("0.5")}
        self.steps = {"BTC-PERP": Decimal("0.001"), "ETH-PERP": Decimal("0.01"), "ETH-FUT": Decimal("0.01")}
        self.accounts: list[str] = []
        self.deposited: dict[str, Decimal] = {}

    def add(self, command_type: str, command_id: str | None = None, **fields: Any) -> dict[str, Any]:
        self.seconds += 1
        at = (T0 + timedelta(seconds=self.seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        command = {"type": command_type, "id": command_id or f"{command_type}-{len(self.commands):04d}", **fields,
                   "at": at}
        self.commands.append(command)
        return command

    def on_tick(self, market: str, value: Decimal) -> Decimal:
        tick = self.ticks[market]
        return (value / tick).quantize(Decimal(1)) * tick

    def price(self, market: str, move: float) -> None:
        new = self.on_tick(market, self.marks[market] * Decimal(str(1 + move)))
        self.add("price", market=market, price=str(new))
        if abs(move) < 0.1:  # outside the 10 % band is rejected and leaves the mark
            self.marks[market] = new

    def open(self, name: str, amount: int) -> None:
        self.add("open_account", f"open-{name}", account=name)
        self.add("deposit", f"dep0-{name}", account=name, amount=str(amount))
        self.accounts.append(name)
        self.deposited[name] = Decimal(amount)

    def trade(self) -> None:
        rng = self.rng
        market = rng.choice(("BTC-PERP", "BTC-PERP", "ETH-PERP", "ETH-FUT"))  # ETH-FUT refused once expired
        buyer, seller = rng.sample(self.accounts, 2)
        mark = self.marks[market]
        # notional mostly within reach of the poorer side's collateral at 10x, sometimes far beyond it
        budget = min(self.deposited[buyer], self.deposited[seller]) * Decimal(rng.choice((2, 4, 6, 8, 30)))
        step = self.steps[market]
        size = max(step, (budget / mark * Decimal(str(rng.uniform(0.05, 1)))).quantize(step))
        price = self.on_tick(market, mark * Decimal(str(1 + rng.uniform(-0.004, 0.004))))
        self.add("trade", market=market, buyer=buyer, seller=seller, size=str(size), price=str(price))


def generate_stream(seed: int, accounts: int = 45, steps: int = 380) -> list[dict[str, Any]]:
    """A seeded stream of about ``2 * accounts + steps + 20`` commands (see the module docstring)."""
    rng = random.Random(seed)
    s = _Stream(rng)
    _list_markets(s)
    # the case: the withdrawal is rejected, and must stay rejected when the stream is posted again
    s.open("alice", 100)
    s.add("withdraw", "w-alice", account="alice", amount="200")
    s.add("deposit", "d-alice-2", account="alice", amount="500")
    for n in range(accounts * 2 // 3):
        s.open(f"acct-{n:02d}", rng.choice((300, 1000, 2500, 5000, 10000, 25000, 60000)))
    later = [f"acct-{n:02d}" for n in range(accounts * 2 // 3, accounts)]
    settled = False
    for _ in range(steps):
        if not settled and s.seconds > EXPIRY_SECONDS + 30:
            s.add("settle", "settle-ethf", market="ETH-FUT", price=str(s.marks["ETH-FUT"]))
            settled = True
            continue
        _random_command(s, later)
    return s.commands


def _list_markets(s: _Stream) -> None:
    """The three markets, the parameters, the first marks and the insurance fund."""
    s.add("create_market", "m-btc", market="BTC-PERP", kind="perpetual", tick_size="0.1", step_size="0.001",
          initial_margin_fraction="0.1", maintenance_margin_fraction="0.05", price_band="0.1")
    s.add("create_market", "m-eth", market="ETH-PERP", kind="perpetual", tick_size="0.01", step_size="0.01",
          tiers=[{"notional_floor": "0", "initial_margin_fraction": "0.05", "maintenance_margin_fraction": "0.03"},
                 {"notional_floor": "50000", "initial_margin_fraction": "0.1", "maintenance_margin_fraction": "0.06"}])
    expiry = (T0 + timedelta(seconds=EXPIRY_SECONDS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    s.add("create_market", "m-ethf", market="ETH-FUT", kind="future", expiry=expiry, tick_size="0.5",
          step_size="0.01", initial_margin_fraction="0.1", maintenance_margin_fraction="0.05")
    s.add("set_parameters", "sp-1", parameters={"liquidation_fee_rate": "0.015", "margin_call_grace": 20})
    for market, mark in (("BTC-PERP", Decimal("60000")), ("ETH-PERP", Decimal("2500")), ("ETH-FUT", Decimal("2510"))):
        s.marks[market] = mark
        s.add("price", f"p0-{market}", market=market, price=str(mark))
    s.add("fund_insurance", "fund-0", amount="20000", contributor="ops")


def _random_command(s: _Stream, later: list[str]) -> None:  # noqa: PLR0912 - one branch per kind of command in the mix
    """One command of the random mix; ``later`` holds the accounts still to be opened."""
    rng = s.rng
    roll = rng.random()
    if roll < 0.40:
        s.trade()
    elif roll < 0.55:
        market = rng.choice(MARKETS[:2] if s.seconds >= EXPIRY_SECONDS else MARKETS)
        move = rng.choice((rng.uniform(-0.03, 0.03),) * 6 + (rng.uniform(-0.09, -0.05), rng.uniform(0.05, 0.09),
                                                             rng.choice((-0.15, 0.2))))
        s.price(market, move)
    elif roll < 0.63:
        name = rng.choice(s.accounts)
        amount = rng.choice((100, 500, 2000, 10000))
        s.add("deposit", account=name, amount=str(amount))
        s.deposited[name] += amount
    elif roll < 0.72:
        name = rng.choice(s.accounts)
        share = rng.choice(("0.1", "0.3", "0.9", "1.5", "4"))  # the larger ones fail collateral or free collateral
        s.add("withdraw", account=name, amount=str((s.deposited[name] * Decimal(share)).quantize(Decimal(1)) + 1))
    elif roll < 0.75 and later:
        s.open(later.pop(0), rng.choice((1000, 8000, 40000)))
    elif roll < 0.78:  # an account nobody opened
        ghost = f"ghost-{rng.randint(0, 9)}"
        if rng.random() < 0.5:
            s.add("deposit", account=ghost, amount="100")
        else:
            s.add("trade", market="BTC-PERP", buyer=ghost, seller=rng.choice(s.accounts), size="0.001",
                  price=str(s.marks["BTC-PERP"]))
    elif roll < 0.84:  # the same id and content again (an earlier applied *or rejected* line)
        s.commands.append(dict(rng.choice(s.commands)))
    elif roll < 0.88:  # the same id with other content
        earlier = rng.choice([c for c in s.commands if c["type"] in ("deposit", "withdraw", "trade")])
        changed = dict(earlier)
        key, more = ("size", s.steps[changed["market"]]) if changed["type"] == "trade" else ("amount", Decimal(1))
        changed[key] = str(Decimal(changed[key]) + more)
        s.commands.append(changed)
    elif roll < 0.91:
        s.add("funding", market=rng.choice(("BTC-PERP", "ETH-PERP")), rate=rng.choice(("0.0001", "-0.0002", "0.0005")))
    elif roll < 0.93:
        s.add("fund_insurance", amount=str(rng.choice((1000, 5000))))
    elif roll < 0.95:
        s.add("close_account", account=rng.choice(s.accounts))  # mostly refused: not flat or not empty
    else:
        s.add("trade", market="BTC-PERP", buyer=s.accounts[0], seller=s.accounts[0], size="0.001",
              price=str(s.marks["BTC-PERP"]))  # self trade


def write_stream(path: Path, commands: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(command, separators=(",", ":")) + "\n" for command in commands))
    return path


# -- running clearing post -------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # result lines reach the pipe as they are printed
    env["CLEARING_OPERATOR"] = OPERATOR  # recorded on every command: the same in every run
    env.pop("CLEARING_DB", None)
    return env


def post(db: str, stream: Path, batch_size: int | None = None) -> subprocess.CompletedProcess[str]:
    """``clearing --db DB post STREAM --json`` to completion."""
    args = [CLEARING, "--db", db, "post", str(stream), "--json"]
    if batch_size is not None:
        args += ["--batch-size", str(batch_size)]
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=_env())


def killed_post(db: str, stream: Path, batch_size: int, after_lines: int, delay: float) -> tuple[int, bool]:
    """Start a post, wait for ``after_lines`` result lines and ``delay`` s more, then SIGKILL.

    Returns (result lines seen, whether the process was still running when killed).
    """
    args = [CLEARING, "--db", db, "post", str(stream), "--json", "--batch-size", str(batch_size)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
    assert process.stdout is not None
    seen = 0
    try:
        while seen < after_lines and process.stdout.readline():
            seen += 1
        time.sleep(delay)
        alive = process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    return seen, alive


# -- stores ----------------------------------------------------------------------------------


class SqliteStores:
    """Fresh SQLite files in one directory."""

    kind = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        self.count += 1
        path = self.directory / f"store-{self.count}.db"
        try:
            yield str(path)
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresStores:
    """A fresh schema per store (``?schema=...``), dropped afterwards."""

    kind = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        import psycopg

        schema = f"kill_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in self.url else "?"
        try:
            yield f"{self.url}{separator}schema={schema}"
        finally:
            with psycopg.connect(self.url, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- what is compared ------------------------------------------------------------------------

_VOLATILE = ("_created_on", "_modified_on", "_pending_events")
#: event fields that legitimately differ: the library's timestamp, and the version of the market
#: a fill was decided on (``Account.TradeFilled.market_version``), which counts batch-level events
BATCH_DEPENDENT_FIELDS = ("timestamp", "market_version")
OPERATOR = "kill-harness"
BATCH_LEVEL = frozenset({"Market.TradingRecorded", "Market.HoldersChanged"})  # one per batch, where batches were cut
FILLS_RECORDED = "Account.FillsRecorded"


@dataclass
class Capture:
    """What a store holds, minus what legitimately depends on batching and interruption."""

    outcomes: dict[int, tuple[Any, ...]]  # line -> ("applied",) or ("rejected", code, field)
    statuses: Counter[str]
    events: list[tuple[Any, ...]]  # (aggregate label, topic, version or None, state without timestamp)
    aggregates: dict[str, dict[str, Any]]  # label -> state without volatile attributes
    head: int
    problems: list[str] = field(default_factory=list)  # tracebacks, bad exit codes, unparsable output


def normalized_outcome(result: dict[str, Any]) -> tuple[Any, ...]:
    status = result.get("status")
    if status in ("applied", "already_applied"):
        return ("applied",)
    if status in ("rejected", "already_rejected"):
        return ("rejected", result.get("code"), result.get("field"))
    return ("unknown status", status)


def parse_results(completed: subprocess.CompletedProcess[str]) -> tuple[dict[int, tuple[Any, ...]], Counter[str], list[str]]:
    outcomes: dict[int, tuple[Any, ...]] = {}
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    if "Traceback" in completed.stderr:
        problems.append(f"traceback on stderr: {completed.stderr[-2000:]}")
    rejected = False
    for text in completed.stdout.splitlines():
        try:
            result = json.loads(text)
        except ValueError:
            problems.append(f"result line is not JSON: {text[:200]!r}")
            continue
        statuses[result.get("status")] += 1
        rejected = rejected or result.get("status") in ("rejected", "already_rejected")
        outcomes[result["line"]] = normalized_outcome(result)
    expected_exit = 1 if rejected else 0
    if completed.returncode != expected_exit:
        problems.append(f"exit status {completed.returncode}, expected {expected_exit}: {completed.stderr.strip()[-500:]}")
    return outcomes, statuses, problems


def _state(aggregate: Any) -> dict[str, Any]:
    state = {key: value for key, value in vars(aggregate).items() if key not in _VOLATILE}
    if type(aggregate).__name__ in ("Market", "Account"):  # versions count batch events and runs of fills
        state.pop("_version", None)
    if type(aggregate).__name__ == "Market":
        state["holders"] = sorted(state.get("holders", {}))
    return state


def capture(db: str, completed: subprocess.CompletedProcess[str]) -> Capture:
    """Read the store ``db`` (in-process) and the results of its last, completed post."""
    from clearing.application import ClearingApplication
    from clearing.settings import store_env

    outcomes, statuses, problems = parse_results(completed)
    app = ClearingApplication(env=store_env(db))
    try:
        notifications = app.recorder.select_notifications(start=1, limit=10**7)
        labels: dict[Any, str] = {}
        events: list[tuple[Any, ...]] = []
        stretch: list[tuple[Any, ...]] = []  # fills of consecutive runs, in a canonical order (below)
        for notification in notifications:
            topic = notification.topic.rsplit(":", 1)[-1]
            if topic in BATCH_LEVEL:
                continue
            state = json.loads(notification.state)
            if topic == FILLS_RECORDED:  # one entry per fill: how fills group into events depends on batching
                stretch.extend(_fills(labels[notification.originator_id], state))
                continue
            events.extend(sorted(stretch, key=lambda entry: (entry[3]["trade_id"], entry[0])))
            stretch = []
            for key in BATCH_DEPENDENT_FIELDS:
                state.pop(key, None)
            originator = notification.originator_id
            if originator not in labels:  # the first event (Created) names the aggregate
                key = state.get("account") or state.get("market") or state.get("command_id")
                labels[originator] = f"{topic.split('.')[0]} {key}" if key else topic.split(".")[0]
            version = None if topic.startswith(("Market.", "Account.")) else notification.originator_version
            events.append((labels[originator], topic, version, state))
        events.extend(sorted(stretch, key=lambda entry: (entry[3]["trade_id"], entry[0])))
        aggregates = {}
        for originator, label in labels.items():
            if not label.startswith("CommandRecord"):  # their one event is compared above
                aggregates[label] = _state(app.repository.get(originator))
        head = notifications[-1].id if notifications else 0
    finally:
        app.close()
    return Capture(outcomes, statuses, events, aggregates, head, problems)


def _fills(label: str, state: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A ``FillsRecorded`` event's fills as entries of their own, without batch-dependent fields."""
    from clearing.domain.fills import FILL_FIELDS

    entries = []
    for wire in state["fills"]:
        fill = {"account": state["account"], **dict(zip(FILL_FIELDS, wire, strict=True))}
        for key in BATCH_DEPENDENT_FIELDS:
            fill.pop(key, None)
        entries.append((label, "fill", None, fill))
    return entries


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _event_text(event: tuple[Any, ...]) -> str:
    label, topic, version, state = event
    state = {k: v for k, v in state.items() if k not in ("originator_topic",)}
    text = _short(json.dumps(_plain(state), sort_keys=True), 240)
    return f"{topic} on {label}{'' if version is None else f' v{version}'} {text}"


def _plain(value: Any) -> Any:
    """The library's typed values (``{"_type_": "decimal_str", "_data_": "1.5"}``) as their data, for reading."""
    if isinstance(value, dict):
        if set(value) == {"_type_", "_data_"}:
            return _plain(value["_data_"])
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _event_pair_text(x: tuple[Any, ...], y: tuple[Any, ...]) -> str:
    """Two events at the same place: the fields that differ when they are of one kind and aggregate."""
    if x[:2] != y[:2]:
        return f"clean {_event_text(x)} | this run {_event_text(y)}"
    fields = [key for key in sorted(set(x[3]) | set(y[3])) if x[3].get(key) != y[3].get(key)]
    differs = "; ".join(f"{key} clean {_short(json.dumps(_plain(x[3].get(key))), 80)} this run "
                        f"{_short(json.dumps(_plain(y[3].get(key))), 80)}"
                        for key in fields[:4])
    versions = "" if x[2] == y[2] else f"; version clean {x[2]} this run {y[2]}"
    return f"{x[1]} on {x[0]}: {differs or 'same state'}{versions}"


def compare(clean: Capture, other: Capture, limit: int = 5, lines: list[str] | None = None) -> list[str]:
    """Differences of ``other`` from ``clean``, precisely, at most ``limit`` of each kind."""
    found: list[str] = [f"run problem: {problem}" for problem in other.problems]
    found += _outcome_differences(clean, other, limit, lines)
    found += _event_log_differences(clean, other, limit)
    found += _aggregate_differences(clean, other, limit)
    return found


def _outcome_differences(clean: Capture, other: Capture, limit: int, lines: list[str] | None) -> list[str]:
    """The lines whose final outcome differs."""
    found: list[str] = []
    wrong = [(n, clean.outcomes.get(n), other.outcomes.get(n)) for n in sorted(set(clean.outcomes) | set(other.outcomes))
             if clean.outcomes.get(n) != other.outcomes.get(n)]
    for n, expected, got in wrong[:limit]:
        text = f" {_short(lines[n - 1], 200)}" if lines and 0 < n <= len(lines) else ""
        found.append(f"outcome of line {n}: clean {expected}, this run {got}{text}")
    if len(wrong) > limit:
        found.append(f"... {len(wrong) - limit} more line outcome(s) differ ({len(wrong)} in all)")
    return found


def _event_log_differences(clean: Capture, other: Capture, limit: int) -> list[str]:
    """Where the event logs differ (in order, batch-level market events left out)."""
    found: list[str] = []
    a = [json.dumps(e, sort_keys=True, default=str) for e in clean.events]
    b = [json.dumps(e, sort_keys=True, default=str) for e in other.events]
    if a == b:
        return found
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    opcodes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    for tag, i1, i2, j1, j2 in opcodes[:limit]:
        if tag == "delete":
            found.append(f"event log: {i2 - i1} event(s) missing at index {i1} (after {j1} matching), first: "
                         f"{_event_text(clean.events[i1])}")
        elif tag == "insert":
            found.append(f"event log: {j2 - j1} extra event(s) at index {j1}, first: {_event_text(other.events[j1])}")
        else:
            found.append(f"event log: at index {i1}/{j1} clean has {i2 - i1} event(s), this run {j2 - j1}; first: "
                         + _event_pair_text(clean.events[i1], other.events[j1]))
    if len(opcodes) > limit:
        found.append(f"... {len(opcodes) - limit} more event-log difference(s) ({len(a)} events clean, {len(b)} this run)")
    return found


def _aggregate_differences(clean: Capture, other: Capture, limit: int) -> list[str]:
    """The aggregates whose final state differs."""
    found: list[str] = []
    shown = 0
    for label in sorted(set(clean.aggregates) | set(other.aggregates)):
        x, y = clean.aggregates.get(label), other.aggregates.get(label)
        if x == y:
            continue
        shown += 1
        if shown > limit:
            continue
        if x is None or y is None:
            found.append(f"aggregate {label}: {'missing' if y is None else 'extra'} in this run")
            continue
        keys = [k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        found.append(f"aggregate {label}: " + "; ".join(f"{k} clean {_short(x.get(k), 120)} this run {_short(y.get(k), 120)}"
                                                     for k in keys[:4]))
    if shown > limit:
        found.append(f"... {shown - limit} more aggregate(s) differ")
    return found


# -- cycles ----------------------------------------------------------------------------------


@dataclass
class CycleReport:
    number: int
    kills: list[tuple[int, int, float, bool]]  # (batch size, lines seen, delay, was running)
    final_batch_size: int
    seconds: float
    differences: list[str]
    statuses: Counter[str]


@dataclass
class HarnessReport:
    kind: str
    seed: int
    lines: int
    clean_statuses: Counter[str]
    clean_codes: Counter[str]
    clean_seconds: float
    cycles: list[CycleReport] = field(default_factory=list)

    @property
    def failed(self) -> list[CycleReport]:
        return [cycle for cycle in self.cycles if cycle.differences]

    def summary(self, limit: int = 3) -> str:
        kills = sum(len(c.kills) for c in self.cycles)
        mid = sum(1 for c in self.cycles for k in c.kills if k[3])
        total = sum(c.seconds for c in self.cycles)
        lines = [
            f"kill harness on {self.kind}, seed {self.seed}: {self.lines} lines; clean run {self.clean_seconds:.1f} s, "
            f"{dict(self.clean_statuses)}; rejection codes {dict(self.clean_codes.most_common())}",
            f"{len(self.cycles)} cycle(s), {kills} SIGKILL(s) ({mid} of a running post), {total:.1f} s "
            f"({total / max(1, len(self.cycles)):.1f} s a cycle); cycles with differences: {len(self.failed)}",
        ]
        for cycle in self.failed[:limit]:
            kills_text = ", ".join(f"batch {b} killed after {n} line(s) +{d * 1000:.0f} ms" for b, n, d, _ in cycle.kills)
            lines.append(f"cycle {cycle.number} ({kills_text}; final batch {cycle.final_batch_size}; "
                         f"final statuses {dict(cycle.statuses)}):")
            lines += [f"  {difference}" for difference in cycle.differences]
        if len(self.failed) > limit:
            lines.append(f"... and {len(self.failed) - limit} more cycle(s) with differences")
        return "\n".join(lines)


def run_harness(stores: Any, directory: Path, cycles: int, seed: int = 1, max_kills: int = 3,
                max_batch: int = 50, progress: Callable[[CycleReport], None] | None = None) -> HarnessReport:
    """Clean run once, then ``cycles`` killed-and-re-posted runs, each compared with it."""
    commands = generate_stream(seed)
    stream = write_stream(directory / f"stream-{seed}.jsonl", commands)
    lines = stream.read_text().splitlines()
    rng = random.Random(f"kills-{seed}-{stores.kind}")  # str seeds are stable across processes
    with stores.fresh() as db:
        started = time.monotonic()
        completed = post(db, stream)
        clean_seconds = time.monotonic() - started
        clean = capture(db, completed)
    if clean.problems:
        raise AssertionError(f"the clean run failed: {clean.problems}")
    codes = Counter(outcome[1] for outcome in clean.outcomes.values() if outcome[0] == "rejected")
    report = HarnessReport(stores.kind, seed, len(lines), clean.statuses, codes, clean_seconds)
    for number in range(1, cycles + 1):
        started = time.monotonic()
        kills = []
        with stores.fresh() as db:
            for _ in range(rng.randint(1, max_kills)):
                batch = rng.randint(1, max_batch)
                after = rng.randrange(len(lines))
                delay = rng.choice((0.0, rng.uniform(0, 0.005), rng.uniform(0, 0.05)))
                seen, alive = killed_post(db, stream, batch, after, delay)
                kills.append((batch, seen, delay, alive))
            final_batch = rng.randint(1, max_batch)
            completed = post(db, stream, final_batch)
            other = capture(db, completed)
        cycle = CycleReport(number, kills, final_batch, time.monotonic() - started, compare(clean, other, lines=lines),
                            other.statuses)
        report.cycles.append(cycle)
        if progress is not None:
            progress(cycle)
    return report
