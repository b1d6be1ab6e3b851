"""The penalty of a liquidation fill and the liquidator's share of it.

A fill above the bankruptcy quote leaves a surplus; the account pays a penalty of at most
``liquidation_fee_rate`` x |q_f| (rounded up) and never more than that surplus, so a
penalty cannot make it bankrupt. ``liquidator_fee_share`` of the penalty goes to the
liquidator, rounded down: the fund keeps the rest, rounding included. A fill at or below
the bankruptcy quote pays none. Example: q_f 4,600, q_b 4,501, rate 1 %, share 0.5 ->
penalty min(99, 46) = 46, liquidator 23, fund 23.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from clearing.domain.parameters import ParameterSet
from clearing.money import ZERO, exact, round_down, round_up


class Penalty(NamedTuple):
    """A fill's penalty and the liquidator's part of it (the fund's part is the difference)."""

    penalty: Decimal
    fee_liquidator: Decimal

    @property
    def to_fund(self) -> Decimal:
        return self.penalty - self.fee_liquidator


@exact
def decide_penalty(quote_fill: Decimal, quote_bankruptcy: Decimal, params: ParameterSet, quantum: Decimal) -> Penalty:
    """Example: q_f 4,540, q_b 4,500, rate 1 % -> penalty min(40, 45.40) = 40."""
    surplus = quote_fill - quote_bankruptcy
    penalty = min(surplus, round_up(params.liquidation_fee_rate * abs(quote_fill), quantum)) if surplus > ZERO else ZERO
    return Penalty(penalty, round_down(penalty * params.liquidator_fee_share, quantum))
