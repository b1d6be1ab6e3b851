"""``liquidations``: the liquidation register of the day.

Columns and units: docs/reports.md, "liquidations".
"""

from __future__ import annotations

from clearing.money import ZERO
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, report_from

#: The projections this report reads.
PROJECTIONS = ("margin", "liquidations")

LIQUIDATION_COLUMNS = ("position", "at", "kind", "account", "market", "reference", "reason", "size_delta", "price_mark",
                       "price", "price_bankruptcy", "equity", "maintenance_margin", "amount", "penalty",
                       "fee_liquidator", "counterparty")


def liquidations(reader: Reader, request: Request) -> Report:
    """Every ``liquidation_register`` row dated D, in log order (the event's own position)."""
    state = reader.state(request.date)
    rows = [{c: r[c] for c in LIQUIDATION_COLUMNS} for r in reader.rows("liquidation_register", "position",
                                                                         day=request.date)]
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    fills = [row for row in rows if row["kind"] == "liquidation_fill"]
    totals = {
        "rows": len(rows), "rows_by_kind": dict(sorted(kinds.items())),
        "accounts_liquidated": ";".join(sorted({row["account"] for row in fills})),
        "penalties": sum((row["penalty"] or ZERO for row in fills), ZERO),
        "fund_draws": sum((row["amount"] for row in rows if row["kind"] == "fund_draw"), ZERO),
    }
    position = as_of(reader, state, PROJECTIONS)
    return report_from(request, state, position, LIQUIDATION_COLUMNS, rows, totals=totals)
