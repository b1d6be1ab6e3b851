"""The ``Account`` aggregate: cross-margin collateral and positions per market.

A position keeps its signed ``size`` and its signed entry notional ``cost`` (sum of
size x price x contract size of the open part), not a rounded average price, so that
trades are exactly zero-sum: the buyer's quote balance (collateral - cost) falls by
exactly what the seller's rises. Unrealized PnL = size x mark x contract - cost.

Reducing a position realizes PnL into collateral. The cost removed is pro rata and
rounded *up* (toward +infinity), which makes the realized amount never larger than the
exact one; the remainder stays in the open cost, so equity is unchanged by the rounding.

Example: long 2 at 100 (cost 200), sell 3 at 110 -> closes 2 (realized 2x110-200 = 20),
opens short 1 at 110 (cost -110).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.ids import account_id
from clearing.money import ZERO, exact, round_up

OPEN = "open"
CLOSED = "closed"


@dataclass(frozen=True)
class Position:
    """A position in one market: signed size, signed entry notional, realized PnL so far."""

    size: Decimal
    cost: Decimal
    realized_pnl: Decimal


FLAT = Position(ZERO, ZERO, ZERO)


@dataclass(frozen=True)
class Fill:
    """The decided effect of one trade on one account's position."""

    size_delta: Decimal
    position_after: Position
    realized_pnl: Decimal

    @property
    def risk_increasing(self) -> bool:
        """A fill that grows |size| or flips the side adds risk and needs initial margin."""
        before = self.position_after.size - self.size_delta
        after = self.position_after.size
        flipped = before != ZERO and after != ZERO and (before > ZERO) != (after > ZERO)
        return abs(after) > abs(before) or flipped


@exact
def decide_fill(position: Position, size_delta: Decimal, price: Decimal, contract_size: Decimal, quantum: Decimal) -> Fill:
    """Apply a signed trade of ``size_delta`` at ``price`` to ``position``.

    The part that reduces the position realizes PnL; the rest opens at ``price``.
    """
    size, cost = position.size, position.cost
    reducing = size != ZERO and (size > ZERO) != (size_delta > ZERO)
    closed = min(abs(size_delta), abs(size)) if reducing else ZERO
    realized = ZERO
    if closed:
        cost_removed = cost if closed == abs(size) else round_up(cost * closed / abs(size), quantum)
        closed_delta = closed if size_delta > ZERO else -closed
        realized = -closed_delta * price * contract_size - cost_removed
        cost -= cost_removed
        size += closed_delta
    opening_delta = size_delta - (closed if size_delta > ZERO else -closed)
    if opening_delta:
        cost += opening_delta * price * contract_size
        size += opening_delta
    after = Position(size=size, cost=cost, realized_pnl=position.realized_pnl + realized)
    return Fill(size_delta=size_delta, position_after=after, realized_pnl=realized)


class Account(Aggregate):
    """A clearing account. Id: uuid5 of the account name."""

    class Opened(Aggregate.Created):
        account: str
        at: datetime

    @staticmethod
    def create_id(account: str) -> UUID:  # type: ignore[override]
        return account_id(account)

    def __init__(self, account: str, at: datetime) -> None:
        self.account = account
        self.opened_at = at
        self.status = OPEN
        self.collateral = ZERO
        self.positions: dict[str, Position] = {}
        self.closed_at: datetime | None = None

    def position(self, market: str) -> Position:
        return self.positions.get(market, FLAT)

    def open_positions(self) -> dict[str, Position]:
        return {market: p for market, p in self.positions.items() if p.size != ZERO}

    class Deposited(Aggregate.Event):
        account: str
        amount: Decimal
        collateral_after: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            account.collateral = self.collateral_after

    class Withdrawn(Aggregate.Event):
        """Carries the margin figures the withdrawal was checked against."""

        account: str
        amount: Decimal
        collateral_after: Decimal
        equity_after: Decimal
        initial_margin_after: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            account.collateral = self.collateral_after

    class TradeFilled(Aggregate.Event):
        """One side of a trade with the position, collateral and margin check it decided.

        ``apply`` assigns the decided "after" values; the position's running realized PnL
        is the one sum it keeps (adding the decided ``realized_pnl``).
        """

        account: str
        trade_id: str
        market: str
        market_version: int
        counterparty: str
        size_delta: Decimal
        price: Decimal
        price_mark: Decimal
        realized_pnl: Decimal
        position_size_after: Decimal
        position_cost_after: Decimal
        collateral_after: Decimal
        equity_after: Decimal
        initial_margin_after: Decimal
        risk_increasing: bool
        at: datetime

        def apply(self, account: Account) -> None:
            realized_before = account.positions[self.market].realized_pnl if self.market in account.positions else ZERO
            account.positions[self.market] = Position(
                size=self.position_size_after,
                cost=self.position_cost_after,
                realized_pnl=realized_before + self.realized_pnl,
            )
            account.collateral = self.collateral_after

    class AccountClosed(Aggregate.Event):
        account: str
        at: datetime

        def apply(self, account: Account) -> None:
            account.status = CLOSED
            account.closed_at = self.at
