"""What one lab run measured: loss-policy metrics from the event log and the final state.

Definitions (also in docs/loss-policies.md). *Borne* by an account = its loss shares
(``Account.LossAllocated.share``) + what its deleveraging fills cost it against the mark
(``Account.PositionTaken.loss_vs_mark`` of every fill whose ``basis`` is not ``backstop``),
netted over the window; a deleveraging fill at a bankruptcy price better than the mark
counts negative.

* ``deficit_total`` - the deficits of bankrupt accounts: ``LossCovered.deficit`` (fund +
  allocations) + the deleveraging fills' ``loss_vs_mark``; equals ``fund_used + borne_total``.
* ``fund_used`` - every ``InsuranceFund.Drawn``.
* ``accounts_touched`` - accounts whose borne amount is > 0.
* ``largest_equity_share`` - max over accounts of borne / equity before the window.
* ``gini_borne`` - Gini coefficient of the borne amounts over the touched accounts only
  (accounts that bore nothing are left out; ``None`` when nobody bore anything).
* ``top_winner_survival`` - the member with the largest gain at the window's worst close
  (on its opening position): equity gained by then / that gain.
* ``max_leverage_left`` - max notional / equity at the end over members with a position.
* ``uncovered`` - minus the sum of negative equities at the end (must be 0).

Example: borne 1, 3 over two accounts -> Gini (2 x (1 x 1 + 2 x 3)) / (2 x 4) - 3/2 = 0.25.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from clearing.audit.log import read_log
from clearing.domain.insurance import FundCause
from clearing.money import LEDGER_CONTEXT, ZERO, exact

RATIO_QUANTUM = Decimal("0.0001")
PAGE = 5000
BACKSTOP_BASIS = "backstop"


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    """``numerator / denominator`` to 4 places (half even); None when the denominator is 0.

    >>> ratio(Decimal(1), Decimal(3)), ratio(Decimal(1), Decimal(0))
    (Decimal('0.3333'), None)
    """
    if denominator == ZERO:
        return None
    return LEDGER_CONTEXT.divide(numerator, denominator).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)


@exact
def gini(amounts: Sequence[Decimal]) -> Decimal | None:
    """Gini coefficient of positive amounts (0 = equal shares, -> 1 = one payer); None if empty.

    >>> gini([Decimal(1), Decimal(3)]), gini([Decimal(2)] * 3), gini([])
    (Decimal('0.25'), Decimal('0'), None)
    """
    if not amounts:
        return None
    assert all(amount > ZERO for amount in amounts), "Gini over accounts that bore something"
    ordered = sorted(amounts)
    count = len(ordered)
    weighted = sum((index * amount for index, amount in enumerate(ordered, start=1)), ZERO)
    value = 2 * weighted / (count * sum(ordered, ZERO)) - Decimal(count + 1) / count
    return max(ZERO, value.quantize(RATIO_QUANTUM, rounding=ROUND_HALF_EVEN)).normalize()


@dataclass
class Tally:
    """Totals folded from one run's event log."""

    deposits: Decimal = ZERO
    withdrawals: Decimal = ZERO
    contributions: Decimal = ZERO
    penalties: Decimal = ZERO
    fund_used: Decimal = ZERO
    deficit_covered: Decimal = ZERO
    deleveraging_loss: Decimal = ZERO
    borne: dict[str, Decimal] = field(default_factory=dict)
    bankrupt: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, event: Any) -> None:
        self.counts[kind] += 1
        if kind == "Account.Deposited":
            self.deposits += event.amount
        elif kind == "Account.Withdrawn":
            self.withdrawals += event.amount
        elif kind == "InsuranceFund.Contributed":
            if event.cause == FundCause.CONTRIBUTION:
                self.contributions += event.amount
            else:
                self.penalties += event.amount
        elif kind == "InsuranceFund.Drawn":
            self.fund_used += event.amount
        elif kind == "Account.LossCovered":
            self.deficit_covered += event.deficit
            self.bankrupt.add(event.account)
        elif kind == "Account.LossAllocated":
            self._bear(event.account, event.share)
        elif kind == "Account.PositionTaken" and event.basis != BACKSTOP_BASIS:
            self.counts["deleveraging_fills"] += 1
            self.deleveraging_loss += event.loss_vs_mark
            self._bear(event.account, event.loss_vs_mark)
            self.bankrupt.add(event.liquidated_account)

    def _bear(self, account: str, amount: Decimal) -> None:
        self.borne[account] = self.borne.get(account, ZERO) + amount

    @property
    def borne_total(self) -> Decimal:
        return sum(self.borne.values(), ZERO)

    @property
    def deficit_total(self) -> Decimal:
        return self.deficit_covered + self.deleveraging_loss


def tally_log(app: Any) -> Tally:
    """Fold the whole notification log of ``app`` (``clearing.audit.log.read_log``)."""
    tally = Tally()
    for page in read_log(app.recorder, app.mapper, page=PAGE):
        for notification, event in page.decoded():
            tally.add(notification.topic.rsplit(":", 1)[-1], event)
    return tally
