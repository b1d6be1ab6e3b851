"""The margin call: when one is issued and what it asks for.

An account with an open position whose equity is below its maintenance margin, and
which is not already called or being liquidated, is called for the amount that restores
initial margin, ``amount_to_initial`` = IM - equity, with a deadline of ``at +
margin_call_grace`` (CME's performance-bond call: the member has until the deadline to
post it). Example: collateral 1,000, long 0.2 at 50,000, mark 47,000, IMF 10 %, MMF 5 %:
equity 400 < MM 470, so the call asks 940 - 400 = 540; with a grace of 3,600 s it is due
an hour after the price that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from clearing.domain.account import LIQUIDATING, MARGIN_CALL
from clearing.domain.parameters import ParameterSet
from clearing.domain.risk.totals import MarginTotals


def below_maintenance(totals: MarginTotals, has_open_position: bool) -> bool:
    """Equity below maintenance margin with something open to margin."""
    return has_open_position and totals.equity < totals.maintenance_margin


def call_warranted(totals: MarginTotals, has_open_position: bool, status: str) -> bool:
    """Below maintenance and no call or liquidation already open."""
    return below_maintenance(totals, has_open_position) and status not in (MARGIN_CALL, LIQUIDATING)


@dataclass(frozen=True)
class CallTerms:
    """What a call asks for and by when (``MarginCallIssued`` records both)."""

    amount_to_initial: Decimal
    deadline: datetime


def call_terms(totals: MarginTotals, params: ParameterSet, at: datetime) -> CallTerms:
    """Example: IM 940, equity 400, grace 3,600 s at 12:00 -> (540, 13:00)."""
    return CallTerms(totals.initial_margin - totals.equity, at + timedelta(seconds=params.margin_call_grace))
