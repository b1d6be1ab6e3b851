"""``disclosures``: CPMI-IOSCO PQD-style quantitative items 4.1, 4.4, 6.1, 6.2, 6.6-6.8 for the period ending D.

Items and units: docs/reports.md, "disclosures".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import select

from clearing.money import LEDGER_CONTEXT, USDC, ZERO
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, joined, report_from
from projections.reports.scenarios import stress_figures
from projections.reports.shocks import signed
from projections.reports.variation_margin import variation_margin, vm_paid

#: The projections this report reads.
PROJECTIONS = ("margin", "insurance_fund", "liquidations")

DISCLOSURE_COLUMNS = ("item", "description", "value")
AVERAGE_QUANTUM = USDC.quantum       # averages (PQD 6.6) are rounded half-even to the collateral quantum


def daily_vm_paid(reader: Reader, until: str) -> list[tuple[str, Decimal]]:
    """(day, VM paid) for every business day with EOD state up to ``until``, oldest first.

    Closed days come from ``margin_eod_accounts`` (unrealized PnL) and ``margin_flows``
    (realized PnL); the open day, when ``until`` reaches it, from the live state. Days
    without events have no rows and paid nothing.
    """
    eod = reader.tables["margin_eod_accounts"]
    flows = reader.tables["margin_flows"]
    realized = {(r.day, r.account): r.realized_pnl for r in reader.connection.execute(
        select(flows.c.day, flows.c.account, flows.c.realized_pnl).where(flows.c.day <= until))}
    unrealized: dict[str, dict[str, Decimal]] = {}
    for r in reader.connection.execute(select(eod.c.day, eod.c.account, eod.c.unrealized_pnl).where(eod.c.day <= until)):
        unrealized.setdefault(r.day, {})[r.account] = r.unrealized_pnl
    clock = reader.clock()
    if clock is not None and until >= clock["day"]:
        unrealized[clock["day"]] = {a: row["unrealized_pnl"] for a, row in reader.state(clock["day"]).accounts.items()}
    result: list[tuple[str, Decimal]] = []
    previous: dict[str, Decimal] = {}
    for day in sorted(unrealized):
        now = unrealized[day]
        accounts = set(now) | {a for (d, a) in realized if d == day}
        result.append((day, vm_paid(variation_margin(now.get(a, ZERO), previous.get(a, ZERO), realized.get((day, a), ZERO))
                                    for a in sorted(accounts))))
        previous = {**previous, **now}
    return result


def calls_by_day(reader: Reader, until: str) -> tuple[dict[str, Decimal], Decimal, str]:
    """Sum of margin calls issued per day, and the largest single call with its account.

    From the register's ``margin_call`` rows (``amount`` = initial margin - equity).
    """
    table = reader.tables["liquidation_register"]
    by_day: dict[str, Decimal] = {}
    largest, who = ZERO, ""
    query = select(table.c.day, table.c.account, table.c.amount, table.c.position).where(
        table.c.kind == "margin_call", table.c.day <= until)
    for r in sorted(reader.connection.execute(query), key=lambda r: r.position):
        by_day[r.day] = by_day.get(r.day, ZERO) + r.amount
        if r.amount > largest:
            largest, who = r.amount, r.account
    return by_day, largest, who


def average(total: Decimal, count: int) -> Decimal:
    """total / count rounded half-even to the collateral quantum (0 when count is 0): 7,160 / 3 -> 2,386.666667."""
    if count == 0:
        return ZERO
    return (total / count).quantize(AVERAGE_QUANTUM, rounding=ROUND_HALF_EVEN, context=LEDGER_CONTEXT)


def _largest(by_day: Iterable[tuple[str, Decimal]]) -> tuple[Decimal, str]:
    """The largest value and the first day it occurs on ("" when every value is 0)."""
    value, day = ZERO, ""
    for found_day, found in by_day:
        if found > value:
            value, day = found, found_day
    return value, day


def disclosures(reader: Reader, request: Request) -> Report:
    """PQD-style items for the period from the first business day to D (rows: item, description, value)."""
    day = request.date
    state, fund, scenarios, worst = stress_figures(reader, request)
    first = reader.first_day()
    days = (date.fromisoformat(day) - date.fromisoformat(first)).days + 1 if first and first <= day else 0
    vm = daily_vm_paid(reader, day)
    vm_total = sum((paid for _, paid in vm), ZERO)
    vm_max, vm_day = _largest(vm)
    calls, largest_call, largest_caller = calls_by_day(reader, day)
    call_max, call_day = _largest(sorted(calls.items()))
    cover_1 = worst[:1]
    cover_2 = worst[:2]
    cover_2_loss = sum((item[1] for item in cover_2), ZERO)
    items = [
        ("period.start", "First business day in the projections (UTC date)", first or ""),
        ("period.end", "Report date D (UTC date)", day),
        ("period.days", "Calendar days in the period, D included (every UTC day is a business day)", days),
        ("4.1", "Insurance fund balance at the end of D (USDC)", fund),
        ("4.4.cover_1", "Largest single-account loss beyond collateral under its worst stress scenario (USDC)",
         cover_1[0][1] if cover_1 else ZERO),
        ("4.4.cover_1.accounts", "Account of cover-1", joined(item[0] for item in cover_1)),
        ("4.4.cover_2", "Sum of the two largest single-account losses beyond collateral (USDC)", cover_2_loss),
        ("4.4.cover_2.accounts", "Accounts of cover-2", joined(item[0] for item in cover_2)),
        ("4.4.cover_2.excess_over_fund", "Cover-2 minus the insurance fund at D, if positive (USDC)",
         max(cover_2_loss - fund, ZERO)),
        ("4.4.scenarios", "Stress scenarios: uniform relative shocks of every mark",
         joined(signed(scenario.shock) for scenario in scenarios)),
        ("6.1", "Total initial margin required at the end of D (USDC)",
         sum((a["initial_margin"] for a in state.accounts.values()), ZERO)),
        ("6.2", "Total initial margin held at the end of D: collateral on deposit, negative balances as 0 (USDC)",
         sum((max(a["collateral"], ZERO) for a in state.accounts.values()), ZERO)),
        ("6.6", "Average total variation margin paid per business day over the period (USDC)", average(vm_total, days)),
        ("6.7", "Maximum total variation margin paid on one business day in the period (USDC)", vm_max),
        ("6.7.day", "Day of 6.7", vm_day),
        ("6.8", "Maximum aggregate margin call issued on one business day in the period (USDC)", call_max),
        ("6.8.day", "Day of 6.8", call_day),
        ("6.8.largest_single", "Largest single margin call in the period (USDC)", largest_call),
        ("6.8.largest_single.account", "Account of the largest single margin call", largest_caller),
    ]
    rows = [{"item": item, "description": description, "value": value} for item, description, value in items]
    position = as_of(reader, state, PROJECTIONS)
    return report_from(request, state, position, DISCLOSURE_COLUMNS, rows)
