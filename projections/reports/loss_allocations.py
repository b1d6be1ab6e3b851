"""``loss-allocations``: bankruptcy deficits and socialized-loss / deleveraging shares of the day.

Columns and units: docs/reports.md, "loss-allocations".
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clearing.money import ZERO
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, report_from

#: The projections this report reads.
PROJECTIONS = ("margin", "losses")

LOSS_COLUMNS = ("row_kind", "position", "at", "loss_id", "market", "account", "policy", "deficit", "fund_paid",
                "allocated", "share", "basis", "basis_total", "loss_total", "price_mark", "price", "size_delta",
                "adl_rank", "liquidated_account")


def loss_allocations(reader: Reader, request: Request) -> Report:
    """Each deficit of D (``loss``) and each account's share of it (``allocation``), in log order.

    A ``loss`` row is the bankrupt account's deficit with what the fund paid and what was
    allocated; an ``allocation`` row is a socialized share or, policy ``adl``, a deleveraging
    fill whose ``share`` is what closing at the bankruptcy price cost the account against the mark.
    """
    state = reader.state(request.date)
    losses: list[dict[str, Any]] = [{"row_kind": "loss", **{c: r.get(c) for c in LOSS_COLUMNS[1:] if c in r}}
                                    for r in reader.rows("loss_events", "position", day=request.date)]
    shares: list[dict[str, Any]] = [{"row_kind": "allocation", **{c: r.get(c) for c in LOSS_COLUMNS[1:] if c in r}}
                                    for r in reader.rows("loss_allocations", "position", day=request.date)]
    rows = sorted(losses + shares, key=lambda row: row["position"])
    by_account: dict[str, Decimal] = {}
    for row in shares:
        by_account[row["account"]] = by_account.get(row["account"], ZERO) + row["share"]
    totals = {
        "losses": len(losses), "deficit": sum((r["deficit"] for r in losses), ZERO),
        "fund_paid": sum((r["fund_paid"] for r in losses), ZERO),
        "allocated": sum((r["allocated"] for r in losses), ZERO),
        "shares": sum(by_account.values(), ZERO), "shares_by_account": dict(sorted(by_account.items())),
    }
    position = as_of(reader, state, PROJECTIONS)
    return report_from(request, state, position, LOSS_COLUMNS, rows, totals=totals)
