"""BitMEX auto-deleveraging score: PnL% x effective leverage (PnL% / leverage at a loss).

Rule (bitmex.com/app/autoDeleveraging, clearing-mechanics.md section 3.1): opposite
positions are ranked by ``PnL% x EffectiveLeverage`` when in profit and ``PnL% /
EffectiveLeverage`` at a loss, highest first, with ``PnL% = (mark value - entry value) /
|entry value|`` and ``EffectiveLeverage = |mark value| / (mark value - bankrupt value)``.
As in the engine (``liquidation.adl_rank``), the distance to bankruptcy is the account's
whole equity: bankrupt value = mark value - equity, so effective leverage = notional /
equity. The formula itself is ``liquidation_math.adl_ranking``; this module only feeds it.
``None`` (ranked last) when equity <= 0 or the position has no entry value.

Example: long 8 at entry 50 (cost 400), equity 80, mark 100: PnL 400 / 400 = 100 %,
leverage 800 / 80 = 10, score 10; long 10 at entry 80, equity 500: 25 % x 2 = 0.5.

>>> from clearing.money import D, fmt
>>> book = [Holder("d", D(8), D(400), D(80)), Holder("a", D(10), D(800), D(500))]
>>> [(account, fmt(value)) for account, value in scores(book, D(100), D(1)) if value is not None]
[('d', '10'), ('a', '0.5')]

Rounding: none; a score is a sort key, recorded as computed (60 significant digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from clearing.domain.loss_policies.base import (
    Holder,
    adl_ranking,
    check_market,
    ledger_exact,
)
from clearing.money import ZERO


@ledger_exact
def score(holder: Holder, mark: Decimal, contract_size: Decimal) -> Decimal | None:
    """One holder's BitMEX score, or ``None`` when equity <= 0 or cost is 0."""
    if holder.equity <= ZERO or holder.cost == ZERO:
        return None
    value_mark = holder.size * mark * contract_size
    return adl_ranking(value_mark, holder.cost, value_mark - holder.equity)


@ledger_exact
def scores(holders: Sequence[Holder], mark: Decimal, contract_size: Decimal) -> list[tuple[str, Decimal | None]]:
    """(account, score) for each holder, in the order given (sort with ``base.queue_key``)."""
    check_market(mark, contract_size)
    return [(holder.account, score(holder, mark, contract_size)) for holder in holders]
