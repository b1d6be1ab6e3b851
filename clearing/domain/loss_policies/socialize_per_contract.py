"""Socialised loss per contract: the loss is charged pro rata to |size| over every open position.

Rule (the engine's ``socialize_per_contract``, ``liquidation.allocate_loss``; Drift v2 and
Mango v4 socialise a bankrupt account's loss over open positions, clearing-mechanics.md
sections 2.2 and 5): each holder, long or short, winner or loser, pays loss x |size| /
sum |size|; a flat account pays nothing (Hyperliquid: "a user who has no open positions will
not socialize any losses"). Nothing is capped, so the whole loss is always covered when
anyone holds a position.

Example: sizes a 10, b 5, c -20, d 8 (43 contracts); a loss of 430 is 10 per contract:
a 100, b 50, c 200, d 80.

>>> from clearing.money import D
>>> book = [Holder("a", D(10), D(800), D(500)), Holder("b", D(5), D(400), D(100)),
...         Holder("c", D(-20), D(-2200), D(400)), Holder("d", D(8), D(400), D(80))]
>>> [(account, str(share)) for account, share in shares(book, D(430), D(1))]
[('a', '100'), ('b', '50'), ('c', '200'), ('d', '80')]

Rounding: largest remainder on the quantum (``liquidation_math.allocate_largest_remainder``,
ties by account name), summing to the loss exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from clearing.domain.loss_policies.base import (
    Holder,
    LossPolicyError,
    allocate,
    check_on_grid,
    ledger_exact,
    open_holders,
)
from clearing.money import ZERO


@ledger_exact
def shares(holders: Sequence[Holder], loss: Decimal, quantum: Decimal) -> list[tuple[str, Decimal]]:
    """[(account, share)] of ``loss`` pro rata to |size|, by account name; [] for no loss.

    Raises:
        LossPolicyError: ``loss`` off the quantum, or a loss with no open position to bear it.
    """
    check_on_grid("loss", loss, quantum)
    book = sorted(open_holders(holders), key=lambda holder: holder.account)
    if loss > ZERO and not book:
        raise LossPolicyError(f"no open position to bear a loss of {loss}")
    charged = allocate(loss, [(holder.account, abs(holder.size)) for holder in book], quantum)
    return [(holder.account, charged[holder.account]) for holder in book]
