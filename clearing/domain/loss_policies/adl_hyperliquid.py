"""Hyperliquid auto-deleveraging score: (mark / entry) x (notional / account value).

Rule (hyperliquid.gitbook.io/hyperliquid-docs/trading/auto-deleveraging, clearing-mechanics.md
section 3.4): opposite positions are sorted by ``(mark_price / entry_price) x
(notional_position / account_value)``, highest first. Account value is the account's whole
equity at the mark (cross margin); entry price = cost / (size x contract size).

Side-symmetric reading: Hyperliquid's docs state the key in its long form, mark / entry,
which a profitable long raises. For a short this module uses entry / mark, so a profitable
short (mark below entry) ranks high exactly as a profitable long does. Chitra,
"Autodeleveraging: Impossibilities and Optimization" (arXiv 2512.01112) formalises the
score as leverage x p_hat / p_ref, the price ratio taken in the position's favour.
``None`` (ranked last) when equity <= 0 or the position has no entry value.

Example, mark 100: long 8 at entry 50, equity 80: (100 / 50) x (800 / 80) = 20; long 20
at entry 110, equity 400: (100 / 110) x 5 = 4.545...; short 4 at entry 125, equity 200:
(125 / 100) x (400 / 200) = 2.5. Unlike BitMEX's PnL% x leverage, a levered position at a
loss can rank above a profitable one of low leverage.

>>> from clearing.money import D, fmt
>>> book = [Holder("d", D(8), D(400), D(80)), Holder("s", D(-4), D(-500), D(200))]
>>> [(account, fmt(value)) for account, value in scores(book, D(100), D(1)) if value is not None]
[('d', '20'), ('s', '2.5')]

Rounding: none; a score is a sort key, recorded as computed (60 significant digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from clearing.domain.loss_policies.base import (
    Holder,
    check_market,
    ledger_exact,
    leverage,
)
from clearing.money import ZERO


@ledger_exact
def price_ratio(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal:
    """mark / entry for a long, entry / mark for a short (entry = cost / (size x contract)).

    Both equal a ratio of signed values: mark value / cost for a long, its inverse for a short.
    """
    value_mark = holder.size * mark * contract_size
    return value_mark / holder.cost if holder.size > ZERO else holder.cost / value_mark


@ledger_exact
def score(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal | None:
    """One holder's Hyperliquid score, or ``None`` when equity <= 0, flat or cost is 0."""
    held_leverage = leverage(holder, mark, contract_size)
    if held_leverage is None or ZERO in (holder.cost, holder.size):
        return None
    return price_ratio(holder, mark, contract_size) * held_leverage


@ledger_exact
def scores(holders: Sequence[Holder], mark: Decimal, contract_size: Decimal) -> list[tuple[str, Decimal | None]]:
    """(account, score) for each holder, in the order given (sort with ``base.queue_key``)."""
    check_market(mark, contract_size)
    return [(holder.account, score(holder, mark, contract_size)) for holder in holders]
