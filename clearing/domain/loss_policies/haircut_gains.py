"""Pro-rata haircut of gains: the loss is charged pro rata to unrealized gains, at most each gain.

Rule (the engine's ``haircut_gains``, ``liquidation.allocate_loss``; Chitra, arXiv 2512.01112:
"Pro-rata: h_i proportional to e+_i / W", the unique monotone, scale-invariant and
Sybil-resistant rule; Percolator's global coverage ratio h = min(Residual, sum PnL+) / sum
PnL+ is the same split): each holder with a gain at the mark pays loss x gain / sum of
gains, so every winner loses the same fraction of its gain. What the gains cannot cover is
returned uncovered (the engine charges it per contract, ``socialize_per_contract``).

Example, mark 100: gains a 200, b 100, d 400 (sum 700), c at a loss. A loss of 490 is 70 %
of the gains: a 140, b 70, d 280, c nothing.

>>> from clearing.money import D, fmt
>>> book = [Holder("a", D(10), D(800), D(500)), Holder("b", D(5), D(400), D(100)),
...         Holder("c", D(20), D(2200), D(400)), Holder("d", D(8), D(400), D(80))]
>>> paid, uncovered = shares(book, D(100), D(1), D(490), D(1))
>>> [(account, fmt(share)) for account, share, _ in paid], fmt(uncovered)
([('a', '140'), ('b', '70'), ('d', '280')], '0')

Rounding: weights are the gains rounded down to the quantum, as in the engine, and so are
the caps; shares by largest remainder (``base.allocate_capped``, ties by account name) sum
to min(loss, sum of capped gains) exactly, none above its gain.
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
    open_holders,
    unrealized_gain,
)
from clearing.money import ZERO


@ledger_exact
def shares(
    holders: Sequence[Holder], mark: Decimal, contract_size: Decimal, loss: Decimal, quantum: Decimal
) -> tuple[list[tuple[str, Decimal, Decimal]], Decimal]:
    """([(account, share, capped gain)], uncovered): ``loss`` pro rata to gains, by account name."""
    check_market(mark, contract_size)
    check_on_grid("loss", loss, quantum)
    winners = sorted(
        (holder for holder in open_holders(holders) if unrealized_gain(holder, mark, contract_size) > ZERO),
        key=lambda holder: holder.account,
    )
    caps = {holder.account: gain_cap(holder, mark, contract_size, quantum) for holder in winners}
    covered = min(loss, sum(caps.values(), ZERO))
    charged = allocate_capped(covered, list(caps.items()), caps, quantum)
    return [(account, charged[account], cap) for account, cap in caps.items()], loss - covered
