"""Leverage-weighted pro rata: haircut unrealized gains with weights leverage x gain.

Rule (Chitra, "Autodeleveraging: Impossibilities and Optimization", arXiv 2512.01112:
"Leverage-weighted pro-rata: weights proportional to l_i x e+_i"): the loss is charged to the
holders with an unrealized gain at the mark, pro rata to leverage x gain, each share at most
its gain; a share that would pass its gain is fixed there and the excess goes to the others
by the same weights (water-filling) until none passes. Haircuts apply to positive PnL only,
never to posted collateral (Chitra, Thogiti, Trujillo Ramirez and Xu, arXiv 2602.15182).

Holders with a gain but equity <= 0 have no finite leverage. Charging them only deepens their
own deficit, which would come back to be allocated again, so they are ranked last: they pay,
pro rata to gain and with recorded weight 0, only what the others' gains cannot cover.

Example, mark 100, contract 1: a gains 200 at leverage 2 (weight 400), b 100 at 5 (500), d 400
at 10 (4,000); c is at a loss and pays nothing. A loss of 600: d's share 600 x 4,000 / 4,900
= 489.80 passes its gain, so d pays 400; the other 200 goes a 88.89, b 111.11, and b is
capped at 100; a pays the last 100. Shares: a 100, b 100, d 400; nothing uncovered.

>>> from clearing.money import D, fmt
>>> book = [Holder("a", D(10), D(800), D(500)), Holder("b", D(5), D(400), D(100)),
...         Holder("c", D(20), D(2200), D(400)), Holder("d", D(8), D(400), D(80))]
>>> paid, uncovered = shares(book, D(100), D(1), D(600), D("0.01"))
>>> [(account, fmt(share)) for account, share, _ in paid], fmt(uncovered)
([('a', '100'), ('b', '100'), ('d', '400')], '0')

Rounding: shares are on the quantum by largest remainder (``base.allocate_capped``, ties by
account name); each cap is the gain rounded down to the quantum, so no share exceeds its
gain and the shares sum to min(loss, sum of capped gains) exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from clearing.domain.loss_policies.base import (
    Holder,
    allocate_capped,
    check_market,
    check_on_grid,
    gain_cap,
    ledger_exact,
    leverage,
    open_holders,
    unrealized_gain,
)
from clearing.money import ZERO


@ledger_exact
def weight(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal:
    """leverage x gain; 0 when equity <= 0 (no finite leverage) or without a gain."""
    held_leverage = leverage(holder, mark, contract_size)
    gain = unrealized_gain(holder, mark, contract_size)
    if held_leverage is None or gain <= ZERO:
        return ZERO
    return held_leverage * gain


@ledger_exact
def shares(
    holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, loss: Decimal, quantum: Decimal
) -> tuple[list[tuple[str, Decimal, Decimal]], Decimal]:
    """([(account, share, weight)], uncovered) charging ``loss`` by leverage x gain.

    Args:
        holders: the positions to charge (the bankrupt account excluded by the caller).
        mark: mark price; contract_size: the market's contract size.
        loss: the amount to allocate, on ``quantum``.
        quantum: the collateral quantum.

    Returns:
        One row per holder with a gain > 0, by account name: its share (0 <= share <= gain)
        and weight; and the part of ``loss`` the gains cannot cover.
    """
    check_market(mark, contract_size)
    check_on_grid("loss", loss, quantum)
    winners = sorted(
        (holder for holder in open_holders(holders) if unrealized_gain(holder, mark, contract_size) > ZERO),
        key=lambda holder: holder.account,
    )
    caps = {holder.account: gain_cap(holder, mark, contract_size, quantum) for holder in winners}
    weights = [(holder.account, weight(holder, mark, contract_size)) for holder in winners]
    covered = min(loss, sum(caps.values(), ZERO))
    first = min(covered, sum((caps[account] for account, held in weights if held > ZERO), ZERO))
    charged = allocate_capped(first, weights, caps, quantum)
    last = [(account, caps[account]) for account, held in weights if held == ZERO]
    left = {account: caps[account] - charged[account] for account in caps}
    charged_last = allocate_capped(covered - first, last, left, quantum)
    paid = [
        (account, charged[account] + charged_last.get(account, ZERO), held)
        for account, held in weights
    ]
    return paid, loss - covered
