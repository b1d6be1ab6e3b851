"""The stress scenarios: every mark shocked on an in-memory copy of the EOD state (nothing is written).

Each scenario re-margins every account with open positions at the shocked marks; the
covers take each account's worst loss over the scenarios. Used by ``stress`` and by
``disclosures`` (PQD 4.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from clearing.domain.account import Position
from clearing.domain.risk.totals import margin_totals
from clearing.money import ZERO, exact
from projections.margin import MarketTerms
from projections.reports.inputs import DayState
from projections.reports.reader import Reader
from projections.reports.request import Request


@exact
def shocked_mark(mark: Decimal, shock: Decimal, tick: Decimal) -> Decimal:
    """mark x (1 + shock) on the market's tick, rounded half-even (one mark for both sides).

    45,300 x (1 - 0.1) = 40,770 (on the 0.1 tick); 45,300 x (1 - 0.1234) = 39,709.98 -> 39,710.
    """
    steps = (mark * (1 + shock) / tick).to_integral_value(rounding=ROUND_HALF_EVEN)
    return (steps * tick).normalize() if steps else ZERO


def fund_split(loss: Decimal, fund: Decimal) -> tuple[Decimal, Decimal]:
    """(fund used, socialized): the fund pays first, the rest is socialized. loss 1,039, fund 170 -> (170, 869)."""
    used = min(loss, max(fund, ZERO))
    return used, loss - used


@dataclass
class Scenario:
    name: str
    shock: Decimal
    marks: dict[str, Decimal]
    losses: dict[str, Decimal]        # account -> loss beyond collateral (> 0 only)
    liquidated: list[str]             # equity < maintenance margin at the shocked marks


@exact
def run_scenario(state: DayState, terms: dict[str, dict[str, Any]], name: str, shock: Decimal) -> Scenario:
    """Every account with open positions re-margined at shocked marks (nothing is written).

    Liquidated when equity < maintenance margin; its loss beyond collateral is max(0, -equity).
    Example: collateral 500, long 0.1 with cost 4,700, mark 45,300 shocked -10% -> 40,770:
    equity 500 + 4,077 - 4,700 = -123 < MM 203.85 -> liquidated, loss 123.
    """
    marks: dict[str, Decimal] = {}
    shocked: dict[str, MarketTerms] = {}
    for market, row in sorted(state.markets.items()):
        if row["mark"] is None or market not in terms:
            continue
        marks[market] = shocked_mark(row["mark"], shock, terms[market]["tick_size"])
        shocked[market] = MarketTerms({**terms[market], "mark": marks[market]})
    held: dict[str, dict[str, Position]] = {}
    for row in state.positions:
        held.setdefault(row["account"], {})[row["market"]] = Position(row["size"], row["cost"], row["realized_pnl"])
    losses, liquidated = {}, []
    for account, positions_held in sorted(held.items()):
        margin = margin_totals(state.accounts[account]["collateral"], positions_held, shocked)
        if margin.equity < margin.maintenance_margin:
            liquidated.append(account)
            if margin.equity < ZERO:
                losses[account] = -margin.equity
    return Scenario(name, shock, marks, losses, liquidated)


def covers(scenarios: list[Scenario]) -> list[tuple[str, Decimal, str]]:
    """Each account's worst loss over the scenarios, largest first: (account, loss, scenario).

    Ties between scenarios keep the first in scenario order; ties between accounts sort by name.
    Cover-1 is the first entry, cover-2 the sum of the first two.
    """
    worst: dict[str, tuple[Decimal, str]] = {}
    for scenario in scenarios:
        for account, loss in scenario.losses.items():
            if account not in worst or loss > worst[account][0]:
                worst[account] = (loss, scenario.name)
    return sorted(((a, loss, s) for a, (loss, s) in worst.items()), key=lambda item: (-item[1], item[0]))


def stress_figures(reader: Reader, request: Request) -> tuple[DayState, Decimal, list[Scenario], list[tuple[str, Decimal, str]]]:
    """State at D, fund balance at D, every scenario, and the per-account worst losses."""
    state = reader.state(request.date)
    fund = reader.fund_balance(request.date)
    terms = {row["market"]: row for row in reader.rows("margin_markets", "market")}
    scenarios = [run_scenario(state, terms, name, shock) for name, shock in request.scenarios()]
    return state, fund, scenarios, covers(scenarios)
