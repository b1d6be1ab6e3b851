"""``clearing demo``: a scenario on the configured store, posted through ``clearing post``'s path.

Three markets (BTC and ETH perpetuals, a dated BTC future), a few hundred accounts with
deposits, an insurance-fund contribution, the backstop liquidator's capital, then a seeded
price path with trades between random accounts at every step. Some trades are meant to
fail the margin check, to show rejections. Ends with market, account and insurance-fund
summaries and what the backstop took or refused.

The backstop liquidator (``backstop_liquidator``, account ``backstop``) is an ordinary
account since ADR 13: it takes a liquidated position only if it then meets initial margin
and holds at most ``liquidator_position_cap`` (1) x its equity in notional, so the demo
funds it with ``BACKSTOP_CAPITAL`` = 1,000,000 USDC: at cap 1 that carries up to about
1,000,000 of position notional, several times the largest single trade (150,000) and about
four times the insurance fund (250,000). Without it every takeover would be refused
(``TakeoverRefused``): insolvent accounts deleveraged against their counterparties, solvent
ones left waiting.

The scenario is generated here, at the boundary, with a seeded generator; the ledger
itself never sees randomness or the clock (every command carries its ``at``).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import click
from eventsourcing.utils import get_topic

from clearing.audit.invariants import check_ledger
from clearing.audit.log import read_log
from clearing.domain.account import Account
from clearing.errors import InvariantViolation
from clearing.money import ZERO, fmt
from clearing.posting import post_lines
from cli import render
from cli.audit import run_verify
from cli.context import Store, pass_store
from cli.failures import REJECTED, VERIFY_FAILED, Failure
from projections.queries import LossPolicies, account_names, account_view, insurance_fund_view, market_view

START = datetime(2025, 10, 10, 20, 0, tzinfo=UTC)
DEMO_DB = "demo.db"  # the demo's own store when neither --db nor CLEARING_DB names one
BACKSTOP = "backstop"  # the default ``backstop_liquidator``
BACKSTOP_CAPITAL = Decimal(1_000_000)  # see the module docstring


class MarketSpec(TypedDict):
    """One demo market: its kind, opening price, tick and step, and tiers or one IMF/MMF pair."""

    kind: str
    price: Decimal
    tick: str
    step: str
    tiers: NotRequired[list[list[str]]]
    imf: NotRequired[str]
    mmf: NotRequired[str]
    expiry: NotRequired[str]


MARKETS: dict[str, MarketSpec] = {
    "BTC-PERP": {"kind": "perpetual", "price": Decimal(112000), "tick": "0.1", "step": "0.001",
                 "tiers": [["0", "0.02", "0.01"], ["1000000", "0.05", "0.025"], ["5000000", "0.1", "0.05"]]},
    "ETH-PERP": {"kind": "perpetual", "price": Decimal(4100), "tick": "0.01", "step": "0.01",
                 "imf": "0.05", "mmf": "0.03"},
    "BTC-FUT-DEC25": {"kind": "future", "price": Decimal(113000), "tick": "0.5", "step": "0.001",
                      "imf": "0.1", "mmf": "0.05", "expiry": "2025-12-26T08:00:00+00:00"},
}


def scenario(accounts: int, steps: int, seed: int) -> Iterator[dict[str, Any]]:
    """The demo's commands, deterministic for a given seed."""
    rng = random.Random(seed)
    at = START
    for name, spec in MARKETS.items():
        command: dict[str, Any] = {"type": "create_market", "id": f"demo-market-{name}", "market": name, "kind": spec["kind"],
                                   "tick_size": spec["tick"], "step_size": spec["step"], "at": at.isoformat()}
        if "tiers" in spec:
            keys = ("notional_floor", "initial_margin_fraction", "maintenance_margin_fraction")
            command["tiers"] = [dict(zip(keys, t, strict=True)) for t in spec["tiers"]]
        else:
            command.update(initial_margin_fraction=spec["imf"], maintenance_margin_fraction=spec["mmf"])
        if "expiry" in spec:
            command["expiry"] = spec["expiry"]
        yield command
        yield {"type": "price", "id": f"demo-price-{name}-0", "market": name, "price": str(spec["price"]), "at": at.isoformat()}
    yield {"type": "fund_insurance", "id": "demo-fund-0", "amount": "250000", "contributor": "clearinghouse",
           "at": at.isoformat()}
    yield {"type": "open_account", "id": "demo-open-backstop", "account": BACKSTOP, "at": at.isoformat()}
    yield {"type": "deposit", "id": "demo-deposit-backstop", "account": BACKSTOP, "amount": fmt(BACKSTOP_CAPITAL),
           "at": at.isoformat()}
    names = [f"acct-{index:04d}" for index in range(accounts)]
    for name in names:
        yield {"type": "open_account", "id": f"demo-open-{name}", "account": name, "at": at.isoformat()}
        amount = rng.choice([2000, 5000, 10000, 25000, 100000])
        yield {"type": "deposit", "id": f"demo-deposit-{name}", "account": name, "amount": str(amount), "at": at.isoformat()}
    prices = {name: spec["price"] for name, spec in MARKETS.items()}
    for step in range(1, steps + 1):
        at += timedelta(minutes=1)
        yield from _step(rng, step, at, prices, names)


def _step(rng: random.Random, step: int, at: datetime, prices: dict[str, Decimal], names: list[str]) -> Iterator[dict[str, Any]]:
    for name, spec in MARKETS.items():
        tick = Decimal(spec["tick"])
        move = Decimal(rng.randint(-60, 55)) / Decimal(10000)  # a gentle down-drift, as on 2025-10-10
        prices[name] = max(tick, (prices[name] * (1 + move) / tick).to_integral_value() * tick)
        yield {"type": "price", "id": f"demo-price-{name}-{step}", "market": name, "price": fmt(prices[name]),
               "at": at.isoformat()}
        for trade in range(4):
            buyer, seller = rng.sample(names, 2)
            notional = Decimal(rng.choice([500, 2000, 8000, 30000, 150000]))
            size = max(Decimal(spec["step"]), (notional / prices[name]).quantize(Decimal(spec["step"])))
            yield {"type": "trade", "id": f"demo-trade-{name}-{step}-{trade}", "market": name, "buyer": buyer,
                   "seller": seller, "size": fmt(size), "price": fmt(prices[name]), "at": at.isoformat()}


@click.command()
@click.option("--accounts", type=click.IntRange(2, 100_000), default=300, show_default=True, help="Accounts to open.")
@click.option("--steps", type=click.IntRange(1, 100_000), default=120, show_default=True, help="Price steps (one minute each).")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the scenario generator.")
@click.option("--show", "show_accounts", type=click.IntRange(0, 1000), default=5, show_default=True,
              help="Accounts to print in full (the most leveraged first).")
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False), default="demo-reports", show_default=True,
              help="Directory for the regulator reports (CSV) of the demo's business day.")
@click.option("--force", is_flag=True, help="Post the demo into a store that already holds events.")
@pass_store
@click.pass_context
def demo(ctx: click.Context, store: Store, accounts: int, steps: int, seed: int, show_accounts: int, reports_dir: str,
         force: bool) -> None:
    """Run a demo scenario on its own store and print market, account and fund summaries.

    The store is demo.db in the current directory unless --db or CLEARING_DB names one. A
    store that already holds events (a real ledger, or an earlier demo) is refused unless
    --force: the demo posts accounts, trades and an insurance-fund contribution.
    """
    if not store.db_chosen:
        store = Store(DEMO_DB, store.operator)
        ctx.call_on_close(store.close)
    app = store.app
    held = app.recorder.max_notification_id() or 0
    if held and not force:
        raise Failure("demo_store_not_empty", f"{store.db} already holds {held} event(s): the demo posts into its own "
                      "store (give a new --db, delete the demo's file, or pass --force)", REJECTED, "db")
    lines = (json.dumps(command) for command in scenario(accounts, steps, seed))
    started = time.perf_counter()
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for outcome in post_lines(app, lines, operator=store.operator):
        statuses[outcome.status] += 1
        if outcome.status == "applied":
            by_type[outcome.command_type] += 1
        if outcome.code:
            codes[outcome.code] += 1
    elapsed = time.perf_counter() - started
    click.echo(f"posted {sum(statuses.values())} commands in {elapsed:.1f}s on {store.db}: "
               + ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in sorted(statuses.items())))
    click.echo("applied by type: " + ", ".join(f"{t} {n}" for t, n in sorted(by_type.items())))
    if codes:
        click.echo("rejected by code: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    if statuses["already_applied"] and not statuses["applied"]:
        click.echo("(every command was already in this store: the demo is idempotent; use a fresh --db to start over)")
    store.catch_up()  # the demo wrote: it brings its projections up before it reads them
    _summaries(app, store.views, accounts, show_accounts)
    _reports(store, reports_dir)
    click.echo("\nclearing audit verify")
    if not run_verify(store):
        sys.exit(VERIFY_FAILED)


def _summaries(app: Any, projections: Any, accounts: int, show_accounts: int) -> None:
    """Summaries read from the projection tables; the final check re-derives them from the log."""
    click.echo("\nMarkets")
    for name in MARKETS:
        click.echo(render.market_text(market_view(projections, name)))
    policies = LossPolicies(app)  # the demo's markets use the default adl; read it like account show does
    views = [account_view(projections, f"acct-{index:04d}", policies) for index in range(accounts)]
    with_positions = [v for v in views if v["positions"]]
    statuses = Counter(v["status"] for v in views)
    click.echo(f"\nAccounts: {len(views)} open, {len(with_positions)} with positions; risk status: "
               + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items())))
    backstop = [account_view(projections, name, policies) for name in _other_accounts(projections, accounts)]
    if backstop:
        click.echo("Other accounts (backstop liquidator): " + ", ".join(
            f"{v['account']} collateral {v['collateral']}, equity {v['equity']}, {len(v['positions'])} position(s)"
            for v in backstop))
    click.echo(_takeovers(app))
    rows = []
    for view in sorted(with_positions, key=lambda v: Decimal(v["margin_ratio"]))[: max(show_accounts, 10)]:
        rows.append([view["account"], view["collateral"], view["equity"], view["initial_margin"],
                     view["maintenance_margin"], view["free_collateral"], view["margin_ratio"], str(len(view["positions"]))])
    click.echo("Lowest margin ratios (equity / maintenance margin):")
    click.echo(render.table(("account", "collateral", "equity", "initial_margin", "maintenance_margin",
                             "free_collateral", "margin_ratio", "positions"), rows, indent="  "))
    for view in sorted(with_positions, key=lambda v: Decimal(v["margin_ratio"]))[:show_accounts]:
        click.echo("")
        click.echo(render.account_text(view))
    fund = insurance_fund_view(projections)
    click.echo("")
    click.echo(render.fund_text(fund))
    _verify(app, sum((Decimal(v["equity"]) for v in views + backstop), ZERO), Decimal(fund["balance"]))


def _reports(store: Store, directory: str) -> None:
    """Write every report for the demo's business day as CSV; print disclosures and stress."""
    from projections.reports.registry import REPORT_NAMES, build_report, check_request
    from projections.reports.rendering import render as render_report

    day = START.date().isoformat()
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    views = store.views
    click.echo(f"\nRegulator reports for {day} (clearing report NAME --date {day}), CSV in {target}/:")
    for name in REPORT_NAMES:
        report = build_report(views, check_request(name, day))
        text = render_report(report, "csv")
        (target / f"{name}.csv").write_text(text, encoding="utf-8")
        click.echo(f"  {name:<17} {len(report.csv_rows or []):>5} rows  as of log position {report.as_of_position}"
                   + ("  (provisional: the day is still open)" if report.provisional else ""))
    _charts(views, day, target)
    click.echo("\ndisclosures (CPMI-IOSCO PQD items):")
    click.echo(render_report(build_report(views, check_request("disclosures", day)), "csv").rstrip())
    stress = build_report(views, check_request("stress", day))
    columns = ("row_kind", "scenario", "accounts_liquidated", "loss_beyond_collateral", "fund_used", "socialized_loss")
    click.echo("\nstress (every mark shocked; account lists in stress.csv):")
    click.echo(render.table(columns, [[render.text_value(row.get(c)) if row.get(c) is not None else "-" for c in columns]
                                      for row in stress.csv_rows or []], indent="  "))


def _charts(views: Any, day: str, target: Path) -> None:
    """Every chart of the demo's day as SVG beside the reports (``clearing chart NAME --date D``)."""
    from projections.charts import CHART_NAMES, render_chart, window

    for name in CHART_NAMES:
        (target / f"{name}.svg").write_bytes(render_chart(views, name, window(day, None, None), "svg"))
    click.echo(f"  charts: {', '.join(f'{name}.svg' for name in CHART_NAMES)} (clearing chart NAME --date {day}; "
               "live at `clearing serve`)")


def _takeovers(app: Any) -> str:
    """What the backstop took and refused, counted from the event log."""
    taken: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for page in read_log(app.recorder, app.mapper, page=10_000, topics=(get_topic(Account.PositionTaken),
                                                                       get_topic(Account.TakeoverRefused))):
        for _, event in page.decoded():
            if isinstance(event, Account.PositionTaken):
                taken[event.basis] += 1
            elif isinstance(event, Account.TakeoverRefused):
                refused[event.outcome] += 1
    return (f"Takeovers: the backstop ({fmt(BACKSTOP_CAPITAL)} deposited) took {taken['backstop']} liquidation fill(s), "
            f"{taken['adl']} deleveraging fill(s) went to counterparties; refused {sum(refused.values())} "
            f"({refused['deleveraged']} deleveraged, {refused['waiting']} waiting)")


def _other_accounts(projections: Any, accounts: int) -> list[str]:
    """Accounts other than the demo's traders (the backstop liquidator, funded by the demo)."""
    ours = {f"acct-{index:04d}" for index in range(accounts)}
    return sorted(name for name in account_names(projections) if name not in ours)


def _verify(app: Any, total_equity: Decimal, fund_balance: Decimal) -> None:
    """Re-derive the ledger from the event log alone and check the invariants."""
    try:
        fold = check_ledger(app)
    except InvariantViolation as violation:
        click.echo(f"\nINVARIANT VIOLATED: {violation}", err=True)
        sys.exit(1)
    expected = fold.deposits - fold.withdrawals + fold.contributions
    click.echo(f"\nChecked from the event log alone: total equity {fmt(total_equity)} + insurance fund "
               f"{fmt(fund_balance)} = {fmt(total_equity + fund_balance)} = deposits {fmt(fold.deposits)} - "
               f"withdrawals {fmt(fold.withdrawals)} + contributions {fmt(fold.contributions)} ({fmt(expected)}); "
               "positions net to zero, open interest matches, every account rebuilt from its events matches.")


#: The top-level commands and groups this module adds to ``clearing`` (``cli.main``).
COMMANDS = (demo,)
