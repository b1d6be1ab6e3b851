"""The registry of reports and the entry functions: check a request, then build its report.

A report is a function ``(Reader, Request) -> Report`` in its own module, with the
projections it reads (``PROJECTIONS``); ``BUILDERS`` maps each report name to both.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import localcontext
from typing import Any

from sqlalchemy import select

from clearing.audit.chain import GENESIS
from clearing.errors import InputError
from clearing.money import LEDGER_CONTEXT
from projections.read import Views
from projections.reports import (
    daily_margin,
    disclosures,
    insurance_fund,
    liquidations,
    loss_allocations,
    positions,
    stress,
)
from projections.reports.price_history import load_prices
from projections.reports.reader import Reader
from projections.reports.request import Request, parse_date
from projections.reports.result import Report
from projections.reports.shocks import parse_shocks
from projections.runner import ProjectionError

BUILDERS: dict[str, tuple[Callable[[Reader, Request], Report], tuple[str, ...]]] = {
    "daily-margin": (daily_margin.daily_margin, daily_margin.PROJECTIONS),
    "positions": (positions.positions, positions.PROJECTIONS),
    "insurance-fund": (insurance_fund.insurance_fund, insurance_fund.PROJECTIONS),
    "liquidations": (liquidations.liquidations, liquidations.PROJECTIONS),
    "loss-allocations": (loss_allocations.loss_allocations, loss_allocations.PROJECTIONS),
    "disclosures": (disclosures.disclosures, disclosures.PROJECTIONS),
    "stress": (stress.stress, stress.PROJECTIONS),
}
REPORT_NAMES = tuple(BUILDERS)


def check_report_name(name: str) -> str:
    """``name`` when it is one of ``REPORT_NAMES``; else ``unknown_report``."""
    if name not in REPORT_NAMES:
        raise InputError("unknown_report", "report", f"{name[:40]!r} is unknown; choose from {', '.join(REPORT_NAMES)}")
    return name


def check_request(name: str, day: str, shock: str | None = None, prices: str | None = None) -> Request:
    """Validate everything the operator typed; raises ``InputError`` naming the field."""
    check_report_name(name)
    parse_date(day)
    if name not in ("stress", "disclosures"):
        for option, value in (("shock", shock), ("prices", prices)):
            if value is not None:
                raise InputError("not_applicable", option,
                                 f"--{option} applies to the stress and disclosures reports only")
    shocks = parse_shocks(shock) if shock is not None else None
    series = load_prices(prices) if prices is not None else None
    return Request(name, day, shocks, prices, series)


def build_report(views: Views, request: Request) -> Report:
    """Build one report from the live projection tables in one read transaction, with its
    provenance: the log position it reflects and the hash chain's head there.

    A day outside the log (before its first business day or after its last) is refused
    (``date_outside_log``): a report of it would be empty or would present the last day's
    state as a later one's.
    """
    builder, projections = BUILDERS[request.name]
    with localcontext(LEDGER_CONTEXT), views.reading() as connection:
        reader = Reader(views, connection, dict.fromkeys((*projections, "margin")))
        check_in_log(reader, request.date)
        report = builder(reader, request)
        report.chain_hash = chain_head(views, connection, report.as_of_position)
        return report


def check_in_log(reader: Reader, day: str) -> None:
    """``day`` lies between the log's first and last business days (the margin projection's)."""
    first, last = reader.first_day(), reader.clock()
    if first is None or last is None:
        raise InputError("date_outside_log", "date", f"the log holds no business day yet; {day} has nothing to report")
    if not first <= day <= last["day"]:
        raise InputError("date_outside_log", "date",
                         f"{day} is outside the log, which covers {first} to {last['day']} (business days, UTC)")


def chain_head(views: Views, connection: Any, position: int) -> str:
    """The hash chain's head (hex) at log ``position``: the hash of the last event at or before it.

    The same log gives the same head on every store and after every rebuild (the chain is
    over the stored events, never rebuilt), so it fixes which history a report came from.
    """
    table = views.table("chain", "audit_chain")
    found = connection.execute(select(table.c.hash).where(table.c.position <= position)
                               .order_by(table.c.position.desc()).limit(1)).scalar()
    if found is None and position > 0:
        raise ProjectionError("projection_behind", "chain", f"the hash chain has not reached log position {position}")
    return str(found) if found is not None else GENESIS.hex()
