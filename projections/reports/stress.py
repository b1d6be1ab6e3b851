"""``stress``: a what-if with every mark shocked: liquidations, loss beyond collateral, fund use, cover-1/cover-2.

Columns and units: docs/reports.md, "stress"; the scenarios themselves are in
``projections.reports.scenarios``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clearing.money import ZERO, fmt
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, joined, report_from
from projections.reports.scenarios import Scenario, fund_split, stress_figures

#: The projections this report reads.
PROJECTIONS = ("margin", "insurance_fund")

STRESS_COLUMNS = ("row_kind", "scenario", "shock", "marks", "accounts_liquidated", "liquidated", "account_losses",
                  "loss_beyond_collateral", "fund_balance", "fund_used", "socialized_loss")


def _losses_text(losses: dict[str, Decimal]) -> str:
    return joined(f"{account}={fmt(loss)}" for account, loss in sorted(losses.items()))


def stress(reader: Reader, request: Request) -> Report:
    """One row per scenario; CSV adds ``cover_1`` and ``cover_2`` rows (JSON: in totals)."""
    state, fund, scenarios, worst = stress_figures(reader, request)
    rows = []
    for scenario in scenarios:
        loss = sum(scenario.losses.values(), ZERO)
        used, socialized = fund_split(loss, fund)
        rows.append({
            "row_kind": "scenario", "scenario": scenario.name, "shock": scenario.shock,
            "marks": joined(f"{m}={fmt(p)}" for m, p in scenario.marks.items()),
            "accounts_liquidated": len(scenario.liquidated), "liquidated": joined(scenario.liquidated),
            "account_losses": _losses_text(scenario.losses), "loss_beyond_collateral": loss,
            "fund_balance": fund, "fund_used": used, "socialized_loss": socialized,
        })
    cover_rows = [_cover_row(kind, worst[:count], fund, scenarios) for kind, count in (("cover_1", 1), ("cover_2", 2))]
    totals = {"fund_balance": fund, "scenarios": len(rows)}
    for row in cover_rows:
        totals.update({row["row_kind"]: row["loss_beyond_collateral"], f"{row['row_kind']}_accounts": row["liquidated"],
                       f"{row['row_kind']}_scenarios": row["scenario"]})
    position = as_of(reader, state, PROJECTIONS)
    return report_from(request, state, position, STRESS_COLUMNS, rows, csv_rows=rows + cover_rows, totals=totals)


def _cover_row(kind: str, worst: list[tuple[str, Decimal, str]], fund: Decimal, scenarios: list[Scenario]) -> dict[str, Any]:
    """A cover row: the accounts, their own worst scenarios and shocks, and the loss against the fund."""
    shocks = {scenario.name: scenario.shock for scenario in scenarios}
    loss = sum((item[1] for item in worst), ZERO)
    used, socialized = fund_split(loss, fund)
    return {"row_kind": kind, "scenario": joined(item[2] for item in worst),
            "shock": joined(fmt(shocks[item[2]]) for item in worst), "accounts_liquidated": len(worst),
            "liquidated": joined(item[0] for item in worst),
            "account_losses": joined(f"{item[0]}={fmt(item[1])}" for item in worst), "loss_beyond_collateral": loss,
            "fund_balance": fund, "fund_used": used, "socialized_loss": socialized}
