"""When a called account is liquidated, and when a liquidation waits for the TWAP.

An account below maintenance margin is first called (``MarginCallIssued``, with a
deadline ``at + margin_call_grace``). It is **due** for liquidation when it is already
being liquidated, when its deadline has passed (or it has no call open), when its equity
is below ``liquidation_floor`` x maintenance, or when its equity is at or below zero
whatever the floor. Example: MM 470, floor 0.5, deadline in an hour: equity 300 waits,
equity 200 (< 235) is due now, and so is equity 300 once the hour has passed.

A due step waits, recorded as ``LiquidationDeferred``, while the mark is more than
``twap_max_deviation`` from the market's TWAP (0 switches the rule off): a mark that far
from its own recent average is more likely a bad print than a price to liquidate at.
Example: mark 40,000, TWAP 50,000, limit 0.1 -> deviation 0.2 > 0.1: deferred.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from clearing.domain.account import LIQUIDATING
from clearing.domain.parameters import ParameterSet
from clearing.domain.risk.totals import MarginTotals
from clearing.money import ZERO, exact


@exact
def liquidation_due(status: str, deadline: datetime | None, at: datetime, totals: MarginTotals, floor: Decimal) -> bool:
    """Whether an account below maintenance, under call or liquidating, is liquidated at ``at``."""
    if status == LIQUIDATING or deadline is None or deadline <= at:
        return True
    return totals.equity < floor * totals.maintenance_margin or totals.equity <= ZERO


@exact
def twap_deviation(price_mark: Decimal | None, price_twap: Decimal | None) -> Decimal | None:
    """|mark - TWAP| / TWAP; None without both prices (or with a TWAP at or below zero)."""
    if price_twap is None or price_twap <= ZERO or price_mark is None:
        return None
    return abs(price_mark - price_twap) / price_twap


def deferred_by_twap(params: ParameterSet, price_mark: Decimal | None, price_twap: Decimal | None) -> Decimal | None:
    """The deviation that defers a due step under ``twap_max_deviation``; None when it does not."""
    limit = params.twap_max_deviation
    deviation = twap_deviation(price_mark, price_twap)
    if limit > ZERO and deviation is not None and deviation > limit:
        return deviation
    return None
