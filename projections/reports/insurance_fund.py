"""``insurance-fund``: opening and closing balance, every movement of the day, totals by cause.

Columns and units: docs/reports.md, "insurance-fund".
"""

from __future__ import annotations

from decimal import Decimal

from clearing.money import ZERO
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, report_from

#: The projections this report reads.
PROJECTIONS = ("margin", "insurance_fund")

FUND_COLUMNS = ("row_kind", "position", "at", "direction", "cause", "amount", "counterparty", "market", "reference",
                "balance_after")


def insurance_fund(reader: Reader, request: Request) -> Report:
    """Opening balance, every movement of the day, totals by direction and cause, closing balance.

    Opening = balance after the last movement dated before D (0 if none); closing = balance
    after the last movement dated on or before D. Example: 100 in on 03-01, penalties 40 and
    30 on 03-02 -> 03-02 opens at 100, inflows liquidation_penalty 70, closes at 170.
    """
    state = reader.state(request.date)
    opening = reader.fund_balance(request.date, inclusive=False)
    closing = reader.fund_balance(request.date)
    movements = [{"row_kind": "movement", **{c: r[c] for c in FUND_COLUMNS[1:]}}
                 for r in reader.rows("fund_movements", "position", day=request.date)]
    by_cause: dict[tuple[str, str], Decimal] = {}
    for row in movements:
        key = (row["direction"], row["cause"])
        by_cause[key] = by_cause.get(key, ZERO) + row["amount"]
    cause_rows = [{"row_kind": "cause_total", "direction": direction, "cause": cause, "amount": amount}
                  for (direction, cause), amount in sorted(by_cause.items())]
    csv_rows = [{"row_kind": "opening", "amount": opening, "balance_after": opening}, *movements, *cause_rows,
                {"row_kind": "closing", "amount": closing, "balance_after": closing}]
    totals = {
        "opening_balance": opening, "closing_balance": closing,
        "inflows": sum((r["amount"] for r in movements if r["direction"] == "in"), ZERO),
        "outflows": sum((r["amount"] for r in movements if r["direction"] == "out"), ZERO),
        "inflows_by_cause": {c: a for (d, c), a in sorted(by_cause.items()) if d == "in"},
        "outflows_by_cause": {c: a for (d, c), a in sorted(by_cause.items()) if d == "out"},
        "movements": len(movements),
    }
    position = as_of(reader, state, PROJECTIONS)
    return report_from(request, state, position, FUND_COLUMNS, movements, csv_rows=csv_rows, totals=totals)
