"""Run the population through each crash window once per loss policy, each in its own store.

Every run gets a fresh SQLite file in a temporary directory (never the operator's store):
the setup commands of ``population.setup_commands``, then one ``price`` per candle (its
close, at its ``open_time_utc``), posted through the same pipeline as ``clearing post``.
Posting stops once after the window's worst candle to value the top winner there; at the
end the run folds its event log (``metrics.tally_log``), values every account on the last
mark, checks money conservation itself and runs ``clearing.audit.invariants.check_ledger``.

The engine implements every name in ``POLICIES``. A name that ``set_parameters`` refuses
anyway (``run_lab`` called with another name; the command line refuses names outside
``POLICIES`` as a usage error before anything runs) is reported *skipped* with the
refusal's message, for every window, and nothing else is run for it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from clearing.application import ClearingApplication, Outcome, open_application
from clearing.audit.invariants import check_ledger
from clearing.domain.parameters import LossPolicy
from clearing.domain.risk.totals import margin_totals
from clearing.errors import InvariantViolation
from clearing.lab.metrics import Tally, gini, ratio, tally_log
from clearing.lab.population import (
    BACKSTOP,
    MARKET,
    Member,
    Population,
    build_population,
    setup_commands,
)
from clearing.lab.tape import Window
from clearing.money import ZERO, fmt
from clearing.posting import post_lines
from clearing.settings import store_env

#: Every loss policy the lab compares (all implemented by the engine: ``clearing.domain.parameters``).
POLICIES = (LossPolicy.ADL, LossPolicy.SOCIALIZE_PER_CONTRACT, LossPolicy.HAIRCUT_GAINS, LossPolicy.ADL_HYPERLIQUID,
            LossPolicy.WATERFILL_LEVERAGE,
            "leverage_weighted_gains")
OPERATOR = "lab"
CANDLES_PER_POST = 60
PROBE_AT = datetime(2020, 1, 1, tzinfo=UTC)
OK = "ok"
SKIPPED = "skipped"
FAILED = "failed"


class RunFailed(Exception):
    """A command of a run was refused where the lab expected it to apply."""


class PolicyRefused(RunFailed):
    """``set_parameters`` refused the policy name (the ledger does not implement it)."""


@dataclass(frozen=True)
class RunResult:
    """One (window, policy) run: ``ok`` with its metrics, or ``skipped``/``failed`` with why."""

    window: str
    policy: str
    status: str
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class LabReport:
    """Everything a lab invocation produced, in run order (window, then policy)."""

    seed: int
    accounts: int
    policies: tuple[str, ...]
    populations: dict[str, dict[str, Any]]
    runs: tuple[RunResult, ...]
    seconds: float


def run_lab(windows: Sequence[Window], accounts: int, seed: int, policies: Sequence[str],
            on_candles: Callable[[int], None] = lambda count: None) -> LabReport:
    """Every window x every policy; ``on_candles(n)`` reports progress (skipped runs count whole)."""
    started = time.perf_counter()
    refused = {policy: message for policy in policies if (message := probe_policy(policy)) is not None}
    populations: dict[str, dict[str, Any]] = {}
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="clearing-lab-") as directory:
        for window in windows:
            population = build_population(accounts, seed, window.entry, window.losing_side)
            populations[window.name] = population.summary()
            for policy in policies:
                if policy in refused:
                    runs.append(RunResult(window.name, policy, SKIPPED, refused[policy]))
                    on_candles(len(window.candles))
                    continue
                runs.append(run_one(population, window, policy, Path(directory), on_candles))
    return LabReport(seed, accounts, tuple(policies), populations, tuple(runs), time.perf_counter() - started)


def probe_policy(policy: str) -> str | None:
    """None when the ledger accepts ``loss_policy`` = ``policy``, else its refusal message."""
    app = ClearingApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    population = build_population(10, 0, Decimal(100), "long")
    setup = setup_commands(population, policy, PROBE_AT)[:2]  # create_market, then set_parameters
    try:
        _post(app, setup)
    except PolicyRefused as refusal:
        return str(refusal)
    finally:
        app.close()
    return None


def run_one(population: Population, window: Window, policy: str, directory: Path,
            on_candles: Callable[[int], None]) -> RunResult:
    """One window under one policy in a new SQLite file inside ``directory``."""
    started = time.perf_counter()
    store = directory / f"{window.name}.{policy}.db"
    app = open_application(store_env(str(store)))
    try:
        metrics = _drive(app, population, window, policy, on_candles)
    except PolicyRefused as refusal:
        return RunResult(window.name, policy, SKIPPED, str(refusal), seconds=time.perf_counter() - started)
    except RunFailed as failure:
        return RunResult(window.name, policy, FAILED, str(failure), seconds=time.perf_counter() - started)
    finally:
        app.close()
    return RunResult(window.name, policy, OK, metrics=metrics, seconds=time.perf_counter() - started)


def _drive(app: ClearingApplication, population: Population, window: Window, policy: str,
           on_candles: Callable[[int], None]) -> dict[str, Any]:
    _post(app, setup_commands(population, policy, window.candles[0].at))
    names = [member.name for member in population.members] + [BACKSTOP]
    before = _valuations(app, names)
    worst = window.worst_index
    _post_candles(app, window, range(worst + 1), on_candles)
    winner = _top_winner(population, window)
    at_worst = _valuations(app, [winner.name])[winner.name]
    _post_candles(app, window, range(worst + 1, len(window.candles)), on_candles)
    after = _valuations(app, names)
    tally = tally_log(app)
    gain_before = winner.size * abs(window.worst.close - window.entry)
    gain_after = at_worst.equity - before[winner.name].equity
    return {
        **_loss_metrics(tally, before, population),
        "top_winner": winner.name,
        "top_winner_gain_before": gain_before,
        "top_winner_gain_after": gain_after,
        "top_winner_survival": ratio(gain_after, gain_before),
        **_end_metrics(app, tally, after, population),
    }


def _post(app: ClearingApplication, commands: Iterable[dict[str, Any]]) -> list[Outcome]:
    lines = [json.dumps(command) for command in commands]
    outcomes = list(post_lines(app, lines, operator=OPERATOR))
    for outcome in outcomes:
        if outcome.status != "applied":
            if outcome.command_id == "lab-policy" and outcome.field == "parameters.loss_policy":
                raise PolicyRefused(f"set-parameters refused it: [{outcome.code}] {outcome.message}")
            raise RunFailed(f"{outcome.command_type} {outcome.command_id} {outcome.status}: "
                            f"[{outcome.code}] {outcome.message}")
    return outcomes


def _post_candles(app: ClearingApplication, window: Window, indexes: range, on_candles: Callable[[int], None]) -> None:
    """One ``price`` per candle (its close at its open time), posted 60 minutes at a time."""
    for first in range(indexes.start, indexes.stop, CANDLES_PER_POST):
        chunk = range(first, min(first + CANDLES_PER_POST, indexes.stop))
        _post(app, ({"type": "price", "id": f"lab-price-{index}", "market": MARKET,
                     "price": fmt(window.candles[index].close), "at": window.candles[index].at.isoformat()}
                    for index in chunk))
        on_candles(len(chunk))


@dataclass(frozen=True)
class Valuation:
    """One account on the current mark: equity and the notional of its open positions."""

    equity: Decimal
    notional: Decimal


def _valuations(app: ClearingApplication, names: Iterable[str]) -> dict[str, Valuation]:
    markets = {MARKET: app.get_market(MARKET)}
    mark = markets[MARKET].price_mark
    assert mark is not None, "the setup posts the entry price first"
    values: dict[str, Valuation] = {}
    for name in names:
        account = app.get_account(name)
        totals = margin_totals(account.collateral, account.positions, markets, with_maintenance=False)
        notional = sum((abs(p.size) * mark for p in account.open_positions().values()), ZERO)
        values[name] = Valuation(totals.equity, notional)
    return values


def _top_winner(population: Population, window: Window) -> Member:
    """The member whose position gains most from the first mark to the worst close (largest size, then name)."""
    winners = [member for member in population.members if member.side != window.losing_side]
    return min(winners, key=lambda member: (-member.size, member.name))


def _loss_metrics(tally: Tally, before: dict[str, Valuation], population: Population) -> dict[str, Any]:
    bearers = {name: amount for name, amount in tally.borne.items() if amount > ZERO}
    shares = [(ratio(amount, before[name].equity), name)
              for name, amount in bearers.items() if before[name].equity > ZERO]
    largest = max(shares, default=(None, None), key=lambda item: (item[0] or ZERO, item[1] or ""))
    return {
        "deficit_total": tally.deficit_total,
        "fund_used": tally.fund_used,
        "borne_total": tally.borne_total,
        "borne_backstop": tally.borne.get(BACKSTOP, ZERO),
        "accounts_touched": len(bearers),
        "largest_equity_share": largest[0],
        "largest_equity_share_account": largest[1],
        "gini_borne": gini(sorted(bearers.values())),
        "bankrupt_accounts": len(tally.bankrupt),
        "liquidation_fills": tally.counts["Account.Liquidated"],
        "deleveraging_fills": tally.counts["deleveraging_fills"],
        "loss_allocations": tally.counts["Account.LossAllocated"],
        "fund_seed": population.fund,
        "penalties_to_fund": tally.penalties,
    }


def _end_metrics(app: ClearingApplication, tally: Tally, after: dict[str, Valuation],
                 population: Population) -> dict[str, Any]:
    members = {member.name for member in population.members}
    leverages = [(ratio(v.notional, v.equity) if v.equity > ZERO else None, name)
                 for name, v in after.items() if name in members and v.notional > ZERO]
    solvent = [(value, name) for value, name in leverages if value is not None]
    largest = max(solvent, default=(None, None), key=lambda item: (item[0] or ZERO, item[1] or ""))
    fund = app.get_insurance_fund()
    fund_end = fund.balance if fund is not None else ZERO
    equity_total = sum((v.equity for v in after.values()), ZERO)
    expected = tally.deposits - tally.withdrawals + tally.contributions
    return {
        "max_leverage_left": largest[0],
        "max_leverage_account": largest[1],
        "members_with_positions_at_or_below_zero_equity": len(leverages) - len(solvent),
        "uncovered": -sum((min(ZERO, v.equity) for v in after.values()), ZERO),
        "fund_end": fund_end,
        "conservation_difference": equity_total + fund_end - expected,
        "invariants": _invariants(app),
    }


def _invariants(app: ClearingApplication) -> str:
    """``ok`` or the first violated invariant (a finding to report, not a crash of the lab)."""
    try:
        check_ledger(app)
    except InvariantViolation as violation:
        return f"violated: {violation}"
    return OK
