"""The effect of one fill on a position: what it realizes and what stays open.

A position is its signed size and its signed entry notional (cost). The part of a fill
that reduces the position realizes PnL, and its cost is removed pro rata, rounded *up*
to the quantum (all of it when the position closes): the realized amount is never
larger than the exact one and the rounding stays in the open cost, so equity is
unchanged by it. The rest of the fill opens at its price.

Example: long 2 with cost 200, sell 3 at 110 -> realized 2 x 110 - 200 = 20, then short
1 with cost -110. With ``quote`` (a deleveraging slice booked at its exact share of the
bankruptcy quote, which only reduces) the PnL is the quote minus the cost removed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from clearing.domain.risk.holding import Holding
from clearing.money import ZERO, exact, round_up


class FillEffect(NamedTuple):
    """Size and cost after a fill, and the PnL it realized."""

    size_after: Decimal
    cost_after: Decimal
    realized_pnl: Decimal


def effect_under_context(
    size: Decimal, cost: Decimal, delta: Decimal, price: Decimal, contract_size: Decimal, quantum: Decimal,
    quote: Decimal | None = None,
) -> FillEffect:
    """(size after, cost after, realized PnL) of a signed fill of ``delta`` at ``price``, for a
    caller already under the ledger's decimal context (``decide_fill``, once per side of every
    trade); everyone else calls ``fill_effect``.

    Example: long 2 with cost 200, sell 3 at 110 -> (-1, -110, 20).
    """
    realized = ZERO
    if size != ZERO and (size > ZERO) != (delta > ZERO):
        closed = min(abs(delta), abs(size))
        removed = cost if closed == abs(size) else round_up(cost * closed / abs(size), quantum)
        closed_delta = closed if delta > ZERO else -closed
        realized = (-closed_delta * price * contract_size if quote is None else quote) - removed
        cost -= removed
        size += closed_delta
        delta -= closed_delta
    if delta != ZERO:
        cost += delta * price * contract_size
        size += delta
    return FillEffect(size, cost, realized)


fill_effect = exact(effect_under_context)


def fill_quote(delta: Decimal, price: Decimal, contract_size: Decimal) -> Decimal:
    """What a fill of ``delta`` at ``price`` pays (-) or receives (+): -delta x price x contract.
    Example: selling 0.1 at 45,010 (delta -0.1, contract 1) receives 4,501."""
    return -delta * price * contract_size


def effect_on(holding: Holding | None, delta: Decimal, price: Decimal, contract_size: Decimal, quantum: Decimal,
              quote: Decimal | None = None) -> FillEffect:
    """``fill_effect`` on a holding (None: flat)."""
    size, cost = (holding.size, holding.cost) if holding is not None else (ZERO, ZERO)
    return fill_effect(size, cost, delta, price, contract_size, quantum, quote)

