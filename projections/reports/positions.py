"""``positions``: end-of-day positions and per-market open interest and volume (39.19(c)(1)(D)).

Columns and units: docs/reports.md, "positions".
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from clearing.money import ZERO
from projections.reports.inputs import previous_day
from projections.reports.reader import Reader, as_of
from projections.reports.request import Request
from projections.reports.result import Report, report_from

#: The projections this report reads.
PROJECTIONS = ("margin",)

POSITIONS_COLUMNS = (
    "row_kind", "market", "account", "status", "size", "entry_price", "mark", "notional", "unrealized_pnl",
    "initial_margin", "maintenance_margin", "liquidation_price", "long_size", "short_size", "open_interest", "holders",
    "volume_day", "volume_total",
)


def volume_of_day(total_now: Decimal, total_before: Decimal) -> Decimal:
    """Volume of a day = cumulative volume at this EOD - cumulative volume at the previous EOD: 0.6 - 0.3 = 0.3."""
    return total_now - total_before


def positions(reader: Reader, request: Request) -> Report:
    """EOD positions per account and market, and one ``market`` row per market (open interest, volume)."""
    state, before = reader.state(request.date), reader.state(previous_day(request.date))
    rows = []
    for name, market in sorted(state.markets.items()):
        volume_before = before.markets.get(name, {}).get("volume", ZERO)
        rows.append({
            "row_kind": "market", "market": name, "status": market["status"], "mark": market["mark"],
            "long_size": market["long_size"], "short_size": market["short_size"], "open_interest": market["long_size"],
            "holders": market["holders"], "volume_day": volume_of_day(market["volume"], volume_before),
            "volume_total": market["volume"],
        })
        for held in (row for row in state.positions if row["market"] == name):
            rows.append({"row_kind": "position", "market": name, "account": held["account"],
                         **{column: held[column] for column in ("size", "entry_price", "mark", "notional",
                                                                "unrealized_pnl", "initial_margin",
                                                                "maintenance_margin", "liquidation_price")}})
    held_rows = [row for row in rows if row["row_kind"] == "position"]
    totals: dict[str, Any] = {name: sum((row[name] for row in held_rows), ZERO)
                              for name in ("notional", "unrealized_pnl", "initial_margin", "maintenance_margin")}
    totals.update(positions=len(held_rows), markets=len(rows) - len(held_rows))
    return report_from(request, state, as_of(reader, state, PROJECTIONS), POSITIONS_COLUMNS, rows, totals=totals)
