"""Whether a liquidator can carry a takeover (ADR 13).

A takeover is allowed only if the taker meets initial margin afterwards and its total
position notional is at most ``liquidator_position_cap`` x its equity
(``liquidation_math.can_carry``); the figures after it are recorded on ``PositionTaken``
(or on ``TakeoverRefused``). The backstop liquidated itself has no taker: its own
figures, refused. Example: backstop with 10,000, flat, takes long 0.1 at 49,000 (mark
50,000, IMF 5 %): equity 10,100, IM 250, notional 5,000 <= 1 x 10,100 -> allowed; with
1,000 of collateral, notional 5,000 > 1,100 -> refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from clearing.domain.liquidation_math import can_carry
from clearing.domain.margin import position_notional
from clearing.domain.risk.fill import effect_on
from clearing.domain.risk.holding import Held, Holding
from clearing.domain.risk.totals import MarkedTerms, margin_totals
from clearing.money import ZERO, exact


@dataclass(frozen=True)
class Capacity:
    """A liquidator's figures after a takeover it would make, and the verdict."""

    equity_after: Decimal
    initial_margin_after: Decimal
    notional_after: Decimal
    cap: Decimal
    allowed: bool

    @property
    def figures(self) -> tuple[Decimal, Decimal, Decimal]:
        """(equity, initial margin, total notional) after, as the events record them."""
        return self.equity_after, self.initial_margin_after, self.notional_after


@exact
def total_notional(positions: Mapping[str, Holding], markets: Mapping[str, MarkedTerms]) -> Decimal:
    """Sum of |size| x mark x contract over the open positions. Example: 0.1 BTC at 50,000
    and 2 ETH at 3,000 -> 11,000."""
    return sum((position_notional(p.size, markets[m].mark, markets[m].contract_size)
                for m, p in positions.items() if p.size != ZERO), ZERO)


@exact
def capacity_of(collateral: Decimal, positions: Mapping[str, Holding], markets: Mapping[str, MarkedTerms],
                cap: Decimal) -> Capacity:
    """A holding's own figures, judged at ``cap``."""
    totals = margin_totals(collateral, positions, markets)
    notional = total_notional(positions, markets)
    allowed = can_carry(totals.equity, totals.initial_margin, notional, cap)
    return Capacity(totals.equity, totals.initial_margin, notional, cap, allowed)


@exact
def capacity_after(collateral: Decimal, positions: Mapping[str, Holding], markets: Mapping[str, MarkedTerms], market: str,
                   delta: Decimal, price: Decimal, fee: Decimal, cap: Decimal) -> Capacity:
    """The taker's figures after taking ``delta`` in ``market`` at ``price`` plus ``fee``."""
    terms = markets[market]
    effect = effect_on(positions.get(market), delta, price, terms.contract_size, terms.collateral_quantum)
    after: dict[str, Holding] = dict(positions)
    after[market] = Held(effect.size_after, effect.cost_after)
    return capacity_of(collateral + effect.realized_pnl + fee, after, markets, cap)


def refused_self(collateral: Decimal, positions: Mapping[str, Holding], markets: Mapping[str, MarkedTerms],
                 cap: Decimal) -> Capacity:
    """The backstop liquidated itself: its own figures, never allowed (it cannot take from itself)."""
    return dataclasses.replace(capacity_of(collateral, positions, markets, cap), allowed=False)
