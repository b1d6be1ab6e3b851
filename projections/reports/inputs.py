"""What the reports read from the projection tables: each projection's tables and the end-of-day state.

A report names the projections it reads (``margin``, ``insurance_fund``, ``losses``,
``liquidations``); ``TABLES`` lists each one's tables. Every report starts from a
:class:`DayState`, the EOD state at its business day and, for VM and volume, at the day before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

MARGIN_LIVE = ("margin_accounts", "margin_positions", "margin_markets")
MARGIN_EOD = ("margin_eod_accounts", "margin_eod_positions", "margin_eod_markets")


TABLES = {
    "margin": (*MARGIN_LIVE, "margin_flows", "margin_clock", *MARGIN_EOD),
    "insurance_fund": ("fund_movements",),
    "losses": ("loss_events", "loss_allocations"),
    "liquidations": ("liquidation_register",),
}


def previous_day(day: str) -> str:
    """The calendar day before: ``2025-03-01`` -> ``2025-02-28``."""
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


@dataclass
class DayState:
    """End-of-day state at a business day, shaped as ``margin_eod_*`` rows."""

    day: str
    provisional: bool
    as_of_position: int
    eod_day: str | None
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: list[dict[str, Any]] = field(default_factory=list)
    markets: dict[str, dict[str, Any]] = field(default_factory=dict)
