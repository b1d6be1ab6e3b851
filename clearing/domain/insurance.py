"""The ``InsuranceFund`` aggregate: one clearinghouse-wide fund, funded by contributions.

Liquidation penalties flow in and bankruptcy deficits are drawn out; its balance never
goes negative (a draw is capped at the balance). Every
movement records its cause and the balance after it, so the fund's history reads as a
ledger: ``contribution 10,000 -> balance 10,000``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.decision_order import InDecisionOrder
from clearing.domain.ids import insurance_fund_id
from clearing.domain.risk.bankruptcy import fund_draw
from clearing.money import ZERO


class FundCause(StrEnum):
    """Why the fund's balance moved (``cause`` on its events; reports group by it)."""

    CONTRIBUTION = "contribution"
    LIQUIDATION_PENALTY = "liquidation_penalty"
    BANKRUPTCY = "bankruptcy"


class InsuranceFund(InDecisionOrder):
    """The clearinghouse insurance fund (a single aggregate with a fixed id)."""

    class Established(Aggregate.Created):
        at: datetime

    @staticmethod
    def create_id() -> UUID:
        return insurance_fund_id()

    def __init__(self, at: datetime) -> None:
        self.established_at = at
        self.balance = ZERO

    class Contributed(Aggregate.Event):
        amount: Decimal
        contributor: str | None
        cause: str
        balance_after: Decimal
        at: datetime

        def apply(self, fund: InsuranceFund) -> None:
            fund.balance = self.balance_after

    class Drawn(Aggregate.Event):
        """The fund paid a bankrupt account's deficit (``cause`` says why)."""

        amount: Decimal
        account: str
        market: str
        cause: str
        reference: str
        balance_after: Decimal
        at: datetime

        def apply(self, fund: InsuranceFund) -> None:
            fund.balance = self.balance_after

    def contribute(self, amount: Decimal, contributor: str | None, at: datetime, cause: str = FundCause.CONTRIBUTION) -> None:
        """Add ``amount`` (a contribution, or a liquidation penalty when ``cause`` says so)."""
        assert amount > ZERO
        self.trigger_event(
            self.Contributed,
            amount=amount,
            contributor=contributor,
            cause=cause,
            balance_after=self.balance + amount,
            at=at,
        )

    def pay_up_to(self, wanted: Decimal, account: str, market: str, reference: str, at: datetime) -> Decimal:
        """Pay as much of ``wanted`` as the balance allows; returns what was paid (may be 0)."""
        paid = fund_draw(wanted, self.balance)
        if paid > ZERO:
            self.draw(paid, account, market, reference, at)
        return paid

    def draw(self, amount: Decimal, account: str, market: str, reference: str, at: datetime) -> None:
        """Pay ``amount`` out; the caller has capped it at the balance (never negative)."""
        assert ZERO < amount <= self.balance
        self.trigger_event(
            self.Drawn,
            amount=amount,
            account=account,
            market=market,
            cause=FundCause.BANKRUPTCY,
            reference=reference,
            balance_after=self.balance - amount,
            at=at,
        )
