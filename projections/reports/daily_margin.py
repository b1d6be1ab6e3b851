"""``daily-margin``: per account, end-of-day margin and the day's cash flows (CFTC 39.19(c)(1)(A)-(C)).

Columns and units: docs/reports.md, "daily-margin".
"""

from __future__ import annotations

from typing import Any

from clearing.money import ZERO
from projections.reports.inputs import previous_day
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, report_from
from projections.reports.variation_margin import variation_margin, vm_paid

#: The projections this report reads.
PROJECTIONS = ("margin",)

DAY_FLOWS = ("realized_pnl", "funding", "penalties", "liquidator_fees", "deposits", "withdrawals", "loss_shares",
             "loss_covered", "largest_call")
DAY_COUNTS = ("calls_issued", "calls_met")

DAILY_MARGIN_COLUMNS = (
    "account", "status", "risk_status", "collateral", "unrealized_pnl", "equity", "initial_margin",
    "maintenance_margin", "free_collateral", "unrealized_pnl_previous", "realized_pnl", "variation_margin", "funding",
    "penalties", "liquidator_fees", "deposits", "withdrawals", "loss_shares", "loss_covered", "calls_issued",
    "calls_met", "largest_call", "open_call",
)


def _zero_flows(account: str) -> dict[str, Any]:
    return {"account": account, **dict.fromkeys(DAY_FLOWS, ZERO), **dict.fromkeys(DAY_COUNTS, 0)}


def daily_margin(reader: Reader, request: Request) -> Report:
    """Per account: EOD requirements and collateral, the day's VM and other cash flows."""
    state, before = reader.state(request.date), reader.state(previous_day(request.date))
    flows = reader.flows(request.date)
    rows = []
    for account in sorted(set(state.accounts) | set(flows)):
        eod = state.accounts.get(account, {})
        day = flows.get(account) or _zero_flows(account)
        previous = before.accounts.get(account, {}).get("unrealized_pnl", ZERO)
        unrealized = eod.get("unrealized_pnl", ZERO)
        rows.append({
            "account": account, "status": eod.get("status"), "risk_status": eod.get("risk_status"),
            **{name: eod.get(name, ZERO) for name in ("collateral", "unrealized_pnl", "equity", "initial_margin",
                                                      "maintenance_margin", "free_collateral")},
            "unrealized_pnl_previous": previous,
            "variation_margin": variation_margin(unrealized, previous, day["realized_pnl"]),
            **{name: day[name] for name in (*DAY_FLOWS, *DAY_COUNTS)},
            "open_call": eod.get("call_amount"),
        })
    summed = ("collateral", "equity", "initial_margin", "maintenance_margin", "variation_margin", "realized_pnl",
              "funding", "penalties", "liquidator_fees", "deposits", "withdrawals", "loss_shares", "loss_covered")
    totals: dict[str, Any] = {name: sum((row[name] for row in rows), ZERO) for name in summed}
    totals.update(accounts=len(rows), calls_issued=sum(row["calls_issued"] for row in rows),
                  calls_met=sum(row["calls_met"] for row in rows),
                  largest_call=max((row["largest_call"] for row in rows), default=ZERO),
                  variation_margin_paid=vm_paid(row["variation_margin"] for row in rows),
                  variation_margin_collected=sum((r["variation_margin"] for r in rows if r["variation_margin"] > ZERO), ZERO))
    return report_from(request, state, as_of(reader, state, PROJECTIONS), DAILY_MARGIN_COLUMNS, rows, totals=totals)
