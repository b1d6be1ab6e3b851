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
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from clearing.domain.decision_order import InDecisionOrder
from clearing.domain.fills import trade_fills
from clearing.domain.ids import account_id
from clearing.domain.risk.fill import effect_under_context
from clearing.money import ZERO, exact


class AccountStatus(StrEnum):
    """Whether an account takes commands: ``open`` until ``close_account``."""

    OPEN = "open"
    CLOSED = "closed"


class RiskStatus(StrEnum):
    """Where an account stands against its margin (recorded on its events as the string)."""

    HEALTHY = "healthy"
    MARGIN_CALL = "margin_call"
    LIQUIDATING = "liquidating"
    BANKRUPT = "bankrupt"


OPEN, CLOSED = AccountStatus.OPEN, AccountStatus.CLOSED
HEALTHY, MARGIN_CALL = RiskStatus.HEALTHY, RiskStatus.MARGIN_CALL
LIQUIDATING, BANKRUPT = RiskStatus.LIQUIDATING, RiskStatus.BANKRUPT


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
        flipped = ZERO not in (before, after) and (before > ZERO) != (after > ZERO)
        return abs(after) > abs(before) or flipped


@exact
def decide_fill(
    position: Position,
    size_delta: Decimal,
    price: Decimal,
    contract_size: Decimal,
    quantum: Decimal,
    quote: Decimal | None = None,
) -> Fill:
    """Apply a signed trade of ``size_delta`` at ``price`` to ``position``.

    The part that reduces the position realizes PnL; the rest opens at ``price``. With
    ``quote`` (what the account receives, + or -, for a fill that only reduces), the PnL is
    realized from that exact amount instead of ``-size_delta x price x contract``: a
    deleveraging fill at the exact bankruptcy quote, whose per-contract price is off the tick.
    """
    reducing = position.size != ZERO and (position.size > ZERO) != (size_delta > ZERO)
    if quote is not None and size_delta != ZERO and (not reducing or abs(size_delta) > abs(position.size)):
        raise ValueError(f"a fill at a quote must only reduce the position {position.size}, not trade {size_delta}")
    size, cost, realized = effect_under_context(position.size, position.cost, size_delta, price, contract_size, quantum, quote)
    after = Position(size=size, cost=cost, realized_pnl=position.realized_pnl + realized)
    return Fill(size_delta=size_delta, position_after=after, realized_pnl=realized)


class Account(InDecisionOrder):
    """A clearing account. Id: uuid5 of the account name."""

    class Opened(Aggregate.Created):
        account: str
        at: datetime

    @staticmethod
    def create_id(account: str) -> UUID:
        return account_id(account)

    def __init__(self, account: str, at: datetime) -> None:
        self.account = account
        self.opened_at = at
        self.status: str = OPEN  # a replayed event carries the plain string
        self.collateral = ZERO
        self.positions: dict[str, Position] = {}
        self.closed_at: datetime | None = None
        self.risk_status: str = HEALTHY
        self.margin_call: dict[str, Any] | None = None  # open call: deadline, amount, market

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

    class FillsRecorded(Aggregate.Event):
        """This account's fills of one run of trades (ADR 25; ``clearing.domain.fills``).

        Each fill is what a ``TradeFilled`` carries; ``apply`` assigns each fill's decided
        "after" values in order, as ``TradeFilled.apply`` does. ``run`` is the trade id of
        the run's first trade, ``operator`` who posted the run and ``latest_at`` the log's
        business-time watermark after it (as a command record's, ``command_record``).
        """

        account: str
        run: str
        operator: str
        latest_at: datetime
        fills: list[list[Any]]

        def apply(self, account: Account) -> None:
            for fill in trade_fills(self):
                _set_position(account, fill.market, fill.position_size_after, fill.position_cost_after, fill.realized_pnl)
                account.collateral = fill.collateral_after

    class AccountClosed(Aggregate.Event):
        account: str
        at: datetime

        def apply(self, account: Account) -> None:
            account.status = CLOSED
            account.closed_at = self.at


    class MarginCallIssued(Aggregate.Event):
        """Equity fell below maintenance margin: the call, its amount and its deadline.

        ``amount_to_initial`` = initial margin - equity (the CCP rule: a call restores initial
        margin). ``deadline`` = ``at`` + ``margin_call_grace`` seconds.
        """

        account: str
        market: str
        price_mark: Decimal
        equity: Decimal
        initial_margin: Decimal
        maintenance_margin: Decimal
        amount_to_initial: Decimal
        deadline: datetime
        parameters: dict[str, Any]
        at: datetime

        def apply(self, account: Account) -> None:
            account.risk_status = MARGIN_CALL
            account.margin_call = {
                "issued_at": self.at,
                "deadline": self.deadline,
                "amount_to_initial": self.amount_to_initial,
                "amount_due": self.amount_to_initial,
                # the rule the call was issued under; logs before issue 8 met calls at maintenance
                "rule": self.parameters.get("margin_call_rule", "maintenance"),
                "market": self.market,
            }

    class MarginCallPaid(Aggregate.Event):
        """A deposit paid part (or all) of an open call: what it paid and what is still due.

        ``amount_paid`` = min(deposit, amount due before); ``amount_due`` = the rest
        (``liquidation_math.call_payment``). The call's deadline is unchanged.
        """

        account: str
        deposit: Decimal
        amount_paid: Decimal
        amount_due: Decimal
        equity: Decimal
        initial_margin: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            if account.margin_call is not None:
                account.margin_call = {**account.margin_call, "amount_due": self.amount_due}


    class MarginCallMet(Aggregate.Event):
        """The open call is met (``liquidation_math.call_met`` under the call's rule).

        ``cme``: equity >= initial margin or nothing left due; ``maintenance``: equity >=
        maintenance margin. ``initial_margin``/``amount_due`` are None in logs before issue 8.
        """

        account: str
        reason: str
        equity: Decimal
        maintenance_margin: Decimal
        at: datetime
        initial_margin: Decimal | None = None
        amount_due: Decimal | None = None

        def apply(self, account: Account) -> None:
            account.risk_status = HEALTHY
            account.margin_call = None


    class Liquidated(Aggregate.Event):
        """One liquidation step on the liquidated account, with every input it was decided on.

        The account sells (or buys back) ``-size_delta`` at ``price_fill`` to ``counterparty``.
        ``quote_bankruptcy`` is what closing this size at the bankruptcy price would pay it;
        ``penalty`` (to fund and liquidator) is taken only from ``quote_fill - quote_bankruptcy``.
        A fill below the bankruptcy quote leaves a deficit, made good by ``LossCovered``.
        A deleveraging slice (``reason`` ``adl``) books ``quote_fill`` = ``quote_bankruptcy``,
        its exact share of the position's bankruptcy quote; ``price_fill`` is then that quote
        per contract (a label, not on the tick) and ``quote_fill`` is what the money follows.
        """

        account: str
        liquidation_id: str
        market: str
        reason: str
        counterparty: str
        size_delta: Decimal
        price_mark: Decimal
        price_fill: Decimal
        price_bankruptcy: Decimal
        quote_fill: Decimal
        quote_bankruptcy: Decimal
        equity_before: Decimal
        initial_margin_before: Decimal
        maintenance_margin_before: Decimal
        penalty: Decimal
        fee_liquidator: Decimal
        realized_pnl: Decimal
        position_size_after: Decimal
        position_cost_after: Decimal
        collateral_after: Decimal
        equity_after: Decimal
        maintenance_margin_after: Decimal
        risk_status_after: str
        parameters: dict[str, Any]
        at: datetime

        def apply(self, account: Account) -> None:
            _set_position(account, self.market, self.position_size_after, self.position_cost_after, self.realized_pnl)
            account.collateral = self.collateral_after
            account.risk_status = self.risk_status_after
            if self.risk_status_after in (HEALTHY, BANKRUPT):
                account.margin_call = None


    class PositionTaken(Aggregate.Event):
        """The other side of a liquidation step: the backstop liquidator or a deleveraged account.

        ``basis`` is ``backstop`` or ``adl``. For ``adl`` the account is closed at the bankrupt
        account's exact bankruptcy quote: ``quote`` is its share of it (the negation of the
        slice's ``quote_fill``) and ``price`` that quote per contract, a label off the tick;
        ``adl_rank`` is its ranking (PnL% x leverage) and ``loss_vs_mark`` what closing
        there cost it against the mark (``-quote - size_delta x mark x contract``).
        """

        account: str
        liquidation_id: str
        market: str
        basis: str
        liquidated_account: str
        size_delta: Decimal
        price: Decimal
        price_mark: Decimal
        fee_received: Decimal
        adl_rank: Decimal | None
        loss_vs_mark: Decimal
        realized_pnl: Decimal
        position_size_after: Decimal
        position_cost_after: Decimal
        collateral_after: Decimal
        at: datetime
        quote: Decimal | None = None  # what the taker received (+) or paid (-); None in logs before it: -size_delta x price
        # a liquidator's capacity check (``liquidation_math.can_carry``), recorded since issue 8:
        equity_after: Decimal | None = None
        initial_margin_after: Decimal | None = None
        notional_after: Decimal | None = None

        def apply(self, account: Account) -> None:
            _set_position(account, self.market, self.position_size_after, self.position_cost_after, self.realized_pnl)
            account.collateral = self.collateral_after

    class TakeoverRefused(Aggregate.Event):
        """No liquidator could carry a due liquidation step (``liquidation_math.can_carry``).

        Recorded on the liquidated account with the liquidator's figures after the takeover
        it would have made. ``outcome`` ``deleveraged``: the account's equity was at or
        below zero or the fill was below its bankruptcy quote, so the position went to the
        market's loss policy at the bankruptcy price (the events that follow); ``waiting``:
        a solvent account stays ``liquidating`` and is tried again at the next check.
        ``liquidator`` equal to ``account`` means the backstop itself was being liquidated.
        """

        account: str
        market: str
        liquidator: str
        size_delta: Decimal
        price_fill: Decimal
        liquidator_equity_after: Decimal
        liquidator_initial_margin_after: Decimal
        liquidator_notional_after: Decimal
        liquidator_position_cap: Decimal
        equity: Decimal
        maintenance_margin: Decimal
        outcome: str
        at: datetime

        def apply(self, account: Account) -> None:
            account.risk_status = LIQUIDATING if account.risk_status != BANKRUPT else account.risk_status


    class LossCovered(Aggregate.Event):
        """A bankrupt account's deficit made good: by the fund and by allocations to others."""

        account: str
        loss_id: str
        market: str
        deficit: Decimal
        fund_paid: Decimal
        allocated: Decimal
        policy: str
        collateral_after: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            account.collateral = self.collateral_after
            account.risk_status = BANKRUPT
            account.margin_call = None


    class LossAllocated(Aggregate.Event):
        """This account's share of a socialized loss and the basis it was computed from.

        ``socialize_per_contract``: basis = |size| of the open position, basis_total = longs +
        shorts. ``haircut_gains``: basis = unrealized gain at ``price_mark``, basis_total = all
        gains in the market. ``adl`` at settlement: basis = the contracts of this winner the
        bankrupt position is closed against, taken in rank order (``rank``, its ADL score),
        basis_total = the bankrupt position's size. Shares are split by largest remainder at
        the collateral quantum.
        """

        account: str
        loss_id: str
        market: str
        policy: str
        loss_total: Decimal
        share: Decimal
        basis: Decimal
        basis_total: Decimal
        price_mark: Decimal
        collateral_after: Decimal
        at: datetime
        rank: Decimal | None = None  # ADL score of a winner charged in rank order (settlement ADL)

        def apply(self, account: Account) -> None:
            account.collateral = self.collateral_after


    class FundingPaid(Aggregate.Event):
        """Funding on one position: ``amount`` > 0 received, < 0 paid; size x mark x rate."""

        account: str
        market: str
        funding_id: str
        rate: Decimal
        price_mark: Decimal
        size: Decimal
        amount: Decimal
        collateral_after: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            account.collateral = self.collateral_after


    class PositionSettled(Aggregate.Event):
        """A future's position closed at the final settlement price, PnL realized."""

        account: str
        market: str
        price_settlement: Decimal
        size: Decimal
        realized_pnl: Decimal
        collateral_after: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            _set_position(account, self.market, ZERO, ZERO, self.realized_pnl)
            account.collateral = self.collateral_after


    class LiquidationDeferred(Aggregate.Event):
        """A due liquidation not carried out because the mark is too far from its TWAP."""

        account: str
        market: str
        price_mark: Decimal
        price_twap: Decimal
        deviation: Decimal
        twap_max_deviation: Decimal
        equity: Decimal
        maintenance_margin: Decimal
        at: datetime

        def apply(self, account: Account) -> None:
            account.risk_status = LIQUIDATING if account.risk_status != BANKRUPT else account.risk_status

    class RecoveredFromBankruptcy(Aggregate.Event):
        """A deposit into a bankrupt, flat account makes it healthy again."""

        account: str
        at: datetime

        def apply(self, account: Account) -> None:
            account.risk_status = HEALTHY


def _set_position(account: Account, market: str, size: Decimal, cost: Decimal, realized: Decimal) -> None:
    before = account.positions.get(market, FLAT)
    account.positions[market] = Position(size=size, cost=cost, realized_pnl=before.realized_pnl + realized)
